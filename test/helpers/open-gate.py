"""
Holds the first open(2) of a file, by any process, until told to let it go (fanotify permission
events): a point inside a native job, reached only once the job is there, where a test can act
while the job waits. Needs CAP_SYS_ADMIN.

    python3 open-gate.py FILE

Prints `ready` once the file is watched, then `held PID` once a process opens it, and lets that
open go on when it reads a line on stdin. Every later open goes on at once; exits when stdin
closes. Prints `unsupported REASON` and exits 3 where fanotify is not allowed.
"""
import ctypes
import os
import select
import struct
import sys

FAN_CLOEXEC = 0x1
FAN_CLASS_CONTENT = 0x4
FAN_MARK_ADD = 0x1
FAN_OPEN_PERM = 0x10000
FAN_ALLOW = 0x1
AT_FDCWD = -100
# struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid
EVENT = struct.Struct('=IBBHQii')

libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]


def say(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


fan = libc.fanotify_init(FAN_CLOEXEC | FAN_CLASS_CONTENT, os.O_RDONLY)
if fan < 0 or libc.fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD, os.fsencode(sys.argv[1])) != 0:
    say('unsupported ' + os.strerror(ctypes.get_errno()))
    sys.exit(3)
say('ready')

held = []  # the event fds of opens not yet let go
first = True
stdin_open = True
while True:
    ready, _, _ = select.select([fan] + ([sys.stdin] if stdin_open else []), [], [])
    if sys.stdin in ready:
        line = sys.stdin.readline()
        for fd in held:
            os.write(fan, struct.pack('=iI', fd, FAN_ALLOW))
            os.close(fd)
        held = []
        if line == '':
            break
    if fan in ready:
        data = os.read(fan, 4096)
        off = 0
        while off + EVENT.size <= len(data):
            event_len, _vers, _res, _meta, _mask, fd, pid = EVENT.unpack_from(data, off)
            off += event_len
            if first:
                first = False
                held.append(fd)
                say('held %d' % pid)
            else:
                os.write(fan, struct.pack('=iI', fd, FAN_ALLOW))
                os.close(fd)
