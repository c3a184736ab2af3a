"""The floor of hashing a cached file on this machine, outside blocksnap: THREADS threads each
take the file's next 4 MiB block, skip it if it is a hole (SEEK_DATA), read it into a buffer of their own (os.preadv: one copy out of
the page cache, the way every read is) and SHA-256 it with hashlib (OpenSSL's SHA-256, the code
`openssl speed` times; it releases the GIL for large buffers, so the threads run on every core).
Prints the seconds taken. The file must already be cached: the caller warms it.

Where the kernel's copy out of the page cache costs a large part of hashing, this sits well
below `openssl speed`, which hashes one buffer over and over and copies nothing.

usage: cached-hash-floor.py PATH THREADS
"""
import hashlib
import os
import sys
import threading
import time

BLOCK = 4 << 20


def main() -> None:
    path, threads = sys.argv[1], int(sys.argv[2])
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    blocks = (size + BLOCK - 1) // BLOCK
    lock = threading.Lock()
    cursor = [0]

    def work() -> None:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        while True:
            with lock:
                i = cursor[0]
                cursor[0] += 1
            if i >= blocks:
                return
            try:
                if os.lseek(fd, i * BLOCK, os.SEEK_DATA) >= (i + 1) * BLOCK:
                    continue
            except OSError:  # ENXIO: only a hole from here to the end
                continue
            got = os.preadv(fd, [view], i * BLOCK)
            hashlib.sha256(view[:got]).digest()

    start = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(f"{time.perf_counter() - start:.6f}")


main()
