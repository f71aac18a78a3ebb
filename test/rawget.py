# rawget.py -- a GET on a raw socket, for tests that must control how
# fast a response is read (sourced by the Python parts of test/*.sh:
# sys.path.insert(0, "test"); from rawget import get_head).
import socket


def get_head(port, path, rcvbuf, timeout):
    """Send GET path (HTTP/1.1, Connection: close) to 127.0.0.1:port on a
    socket whose receive buffer is rcvbuf bytes (set before connecting, so
    the window stays that small) and recv() timeout is timeout seconds;
    read up to the end of the head (RFC 9112 section 2.1: CRLF CRLF).
    Returns (sock, status, content_length, body_so_far): status a string
    ("none" if no status line came), content_length -1 if absent."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET " + path.encode() +
              b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    status = head.split(b" ")[1].decode() if b" " in head else "none"
    clen = -1
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v)
    return s, status, clen, body
