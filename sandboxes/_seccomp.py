"""A seccomp filter for agent commands: deny what agent code never needs. Stdlib only.

Why, when commands already run without capabilities in their own namespaces: some
kernel interfaces are reachable without any (an unprivileged user namespace gives back
every capability, inside it), and each is attack surface or a way around the limits:
- new namespaces (`unshare -Urm`, clone with CLONE_NEW*): a private tmpfs past
  `disk_mb`, a fresh user-namespace count against the uid's quota;
- mounting of any kind, old API and new (mount, fsopen, open_tree, move_mount...);
- keys (add_key, request_key, keyctl): a per-uid kernel quota shared across trees;
- bpf, perf_event_open, userfaultfd, io_uring: the usual kernel exploit vectors;
- kexec, modules, swap, reboot, clocks, host and domain names, accounting, quotas,
  file handles (open_by_handle_at walks around mount confinement), fanotify, syslog.

`DENIED` is that list; calls to them fail with EPERM. clone3 fails with ENOSYS instead,
which makes libc fall back to clone, whose flags a classic filter can read; clone with
a namespace flag fails with EPERM. Only x86_64 and aarch64 carry a table; elsewhere
`install` returns False and the sandbox's capabilities leave "seccomp" out.

`WORKER_DENIED` filters the sandbox worker itself, where python() code runs: the worker
mounts, unshares and joins namespaces to fork, so it keeps those (and host names, now a
branch's own), and loses the rest. The keys matter most there: every branch of a tree is
one uid in one user namespace, so they share one user keyring, a channel between them.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

DENIED = (
    "mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "unshare", "setns", "add_key", "request_key",
    "keyctl", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "swapon", "swapoff", "reboot", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "acct", "quotactl",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "syslog", "vhangup",
)
_FORKING = ("mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen",
            "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns",
            "sethostname", "setdomainname")
WORKER_DENIED = tuple(name for name in DENIED if name not in _FORKING)
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_NEW_NAMESPACES = 0x7E020000

_X86_64 = {
    "mount": 165, "umount2": 166, "pivot_root": 155, "unshare": 272, "setns": 308,
    "add_key": 248, "request_key": 249, "keyctl": 250, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "swapon": 167, "swapoff": 168, "reboot": 169,
    "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
    "sethostname": 170, "setdomainname": 171, "acct": 163, "quotactl": 179,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "fanotify_init": 300, "syslog": 103,
    "vhangup": 153, "clone": 56,
}
_AARCH64 = {
    "mount": 40, "umount2": 39, "pivot_root": 41, "unshare": 97, "setns": 268,
    "add_key": 217, "request_key": 218, "keyctl": 219, "bpf": 280, "perf_event_open": 241,
    "userfaultfd": 282, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
    "finit_module": 273, "delete_module": 106, "swapon": 224, "swapoff": 225, "reboot": 142,
    "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171,
    "sethostname": 161, "setdomainname": 162, "acct": 89, "quotactl": 60,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "fanotify_init": 262, "syslog": 116,
    "vhangup": 58, "clone": 220,
}
# Numbers added in Linux 5.1+ are the same on every architecture.
_COMMON = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
           "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
           "fspick": 433, "clone3": 435, "mount_setattr": 442}
_ARCHES = {"x86_64": (0xC000003E, _X86_64), "aarch64": (0xC00000B7, _AARCH64)}

_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_ERRNO = 0x00050000
_X32_BIT = 0x40000000
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def program(machine: str, denied_names: tuple[str, ...] = DENIED) -> bytes | None:
    """The filter as packed `struct sock_filter`s, or None for an architecture without a
    table. New namespaces through clone are refused only along with `unshare`."""
    if machine not in _ARCHES:
        return None
    arch, table = _ARCHES[machine]
    numbers = table | _COMMON
    denied = [numbers[name] for name in denied_names]
    code: list[tuple[int, int, int, int]] = [(_LD_ABS, 0, 0, 4)]  # seccomp_data.arch
    code.append((_JEQ, 1, 0, arch))
    code.append((_RET, 0, 0, _KILL))  # a syscall made through another ABI's table
    code.append((_LD_ABS, 0, 0, 0))  # seccomp_data.nr
    if machine == "x86_64":  # the x32 ABI: the same calls under other numbers
        code.append((_JGE, 0, 1, _X32_BIT))
        code.append((_RET, 0, 0, _ERRNO | errno.EPERM))
    for nr in denied:
        code.append((_JEQ, 0, 1, nr))
        code.append((_RET, 0, 0, _ERRNO | errno.EPERM))
    if "unshare" in denied_names:
        code.append((_JEQ, 0, 1, numbers["clone3"]))
        code.append((_RET, 0, 0, _ERRNO | errno.ENOSYS))
        code.append((_JEQ, 0, 3, numbers["clone"]))
        code.append((_LD_ABS, 0, 0, 16))  # the low 32 bits of args[0]: clone's flags
        code.append((_JSET, 0, 1, _NEW_NAMESPACES))
        code.append((_RET, 0, 0, _ERRNO | errno.EPERM))
    code.append((_RET, 0, 0, _ALLOW))
    return b"".join(struct.pack("=HBBI", *ins) for ins in code)


def install(denied_names: tuple[str, ...] = DENIED) -> bool:
    """Filter this process and everything it starts from now on; needs no_new_privs set
    (or CAP_SYS_ADMIN, as the worker has in its user namespace). False where this
    architecture has no table (nothing is installed)."""
    code = program(platform.machine(), denied_names)
    if code is None:
        return False
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _Program(len(code) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                           ctypes.c_ulong]
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {errno.errorcode.get(err, err)}")
    return True
