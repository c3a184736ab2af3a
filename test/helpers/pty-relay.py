"""
Runs a command on a pseudo-terminal, as if typed at one: what this process reads on stdin is typed
(keys such as Ctrl-C are bytes: b'\\x03'), and what the command writes to the terminal comes out
on stdout. Exits with the command's status, 128 + the signal's number if a signal ended it.

    python3 pty-relay.py COMMAND [ARG...]
"""
import os
import pty
import select
import signal
import sys

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

# Forwarded, so a test can signal the command as a terminal's user or a program would.
for sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, lambda s, _f: os.kill(pid, s))

typing = True
while True:
    try:
        ready, _, _ = select.select([fd] + ([0] if typing else []), [], [])
    except InterruptedError:
        continue
    if 0 in ready:
        keys = os.read(0, 1024)
        if keys:
            os.write(fd, keys)
        else:
            typing = False
    if fd in ready:
        try:
            out = os.read(fd, 4096)
        except OSError:  # EIO: the command and everything it started closed the terminal
            break
        if not out:
            break
        os.write(1, out)

_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
