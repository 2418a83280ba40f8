"""The TCP sockets a process tree listens on, read from /proc (what ``ss -ltnp`` reads)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path


def _hex_address(text: str) -> str:
    """/proc/net/tcp's little-endian hex address -> its text form."""
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def listening_inodes() -> dict[str, str]:
    """socket inode -> "address:port" for every TCP socket in LISTEN state (0A)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":
                continue
            host, port = fields[1].split(":")
            found[fields[9]] = f"{_hex_address(host)}:{int(port, 16)}"
    return found


def listeners_of_session(sid: int) -> list[tuple[str, int, str]]:
    """(address:port, pid, command) of every listening socket held by a process of session ``sid``."""
    inodes = listening_inodes()
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        pid = int(proc.name)
        try:
            if os.getsid(pid) != sid:
                continue
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        for link in links:
            if link.startswith("socket:[") and link[8:-1] in inodes:
                out.append((inodes[link[8:-1]], pid, cmd))
    return sorted(set(out))


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address.rsplit(":", 1)[0].strip("[]")).is_loopback
