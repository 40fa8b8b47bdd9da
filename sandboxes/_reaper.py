"""A branch init's last form: a 121-byte x86-64 program that waits for the worker, reaps
what falls to it and exits when nothing is left, as _nest.py's Python loop does.

Why. An init is a fork of the worker that made its namespace, so it shares that worker's
pages; once the worker has changed or left them, the init alone keeps the old copies,
a snapshot of the interpreter that nobody will use; exec'ing this program drops them,
and `treegym bench sandbox`'s `fork_pss_mib` halved with it (README). It is built
from its machine code here, not shipped as a file, because the init's root is by then an
empty tmpfs; the code was assembled from this source with GNU as:

    lea rsi, [rip+name]; mov edi, 15; xor edx, edx; xor r10d, r10d; xor r8d, r8d
    mov eax, 157; syscall                      # prctl(PR_SET_NAME, name): the init's name
    sub rsp, 16
  poll: mov dword [rsp], 3; mov dword [rsp+4], 1; mov rdi, rsp; mov esi, 1; mov edx, -1
    mov eax, 7; syscall; cmp rax, -4; je poll  # poll the worker's pidfd (fd 3) till it exits
  reap: mov rdi, -1; xor esi, esi; xor edx, edx; xor r10d, r10d
    mov eax, 61; syscall; cmp rax, -10; jne reap  # wait4(-1) until ECHILD
    xor edi, edi; mov eax, 231; syscall        # exit_group(0)
  name: .asciz "treegym-init"

Elsewhere than x86-64 `exec_reaper` returns and the Python loop goes on. Stdlib only.
"""

from __future__ import annotations

import os
import platform
import struct

_CODE = bytes.fromhex(
    "488d3565000000bf0f00000031d24531d24531c0b89d0000000f054883ec10c7042403000000c744"
    "2404010000004889e7be01000000baffffffffb8070000000f054883f8fc74d748c7c7ffffffff31"
    "f631d24531d2b83d0000000f054883f8f675e531ffb8e70000000f057472656567796d2d696e6974"
    "00")
_BASE = 0x400000
_HEADERS = 64 + 56  # one ELF64 header, one program header


def _elf() -> bytes:
    size = _HEADERS + len(_CODE)
    header = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 0x3E, 1,
                         _BASE + _HEADERS, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)
    return header + segment + _CODE


def exec_reaper(worker_pidfd: int, argv: list[str]) -> None:
    """Become the program, with the worker's pidfd as fd 3 and this process's `argv` (so
    leak checks that match the command line find it); return if it cannot run here."""
    if platform.machine() != "x86_64":
        return
    program = os.memfd_create("treegym-init", 0)
    os.write(program, _elf())
    if worker_pidfd != 3:
        os.dup2(worker_pidfd, 3)
    try:
        os.execve(program, argv, {})
    except OSError:
        os.close(program)
