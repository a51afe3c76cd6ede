#!/usr/bin/env python3
"""Checks the nginx-debian-php persona against a real nginx.

Part 1 starts `webtrap probe` with the persona and checks that it serves
its routes: pages, forms, trap files and the credential realm.

Part 2 starts Debian's nginx on 127.0.0.1 with a private configuration in a
temporary folder (Debian's defaults: server_tokens on, gzip on, default_type
application/octet-stream, a `location ~ /\\.ht { deny all; }`) and sends the
same requests to nginx and to the probe. For each it compares the status
line, the header names in order, the header values and the body, after
replacing each server's port. It compares only the names of Date,
Connection (the persona writes "Keep-Alive" where nginx writes
"keep-alive"), ETag and Last-Modified (the persona computes them as Apache
does): docs/personas.md lists these as differences that the persona format
cannot express.

Part 3 renders each file in the persona's errors/ folder and compares it with
the page nginx sends for that status, including 413, 500 and 501, which the
probe's own request handling does not produce the way nginx does.

Part 2 and 3 are skipped with a message when nginx is not installed; the
test then exits 77 after part 1 passed.
"""

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import probe_harness  # noqa: E402

NGINX = "/usr/sbin/nginx"
PERSONA = probe_harness.SOURCE_DIR / "personas" / "nginx-debian-php"
LAST_MODIFIED = 1716363669  # the persona's last_modified, 2024-05-22T07:41:09Z

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  gzip on;
  access_log off;
  client_max_body_size 1k;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root}/html;
    server_name _;
    location / {{ try_files $uri $uri/ =404; }}
    location ~ /\\.ht {{ deny all; }}
    location /admin/ {{ auth_basic "Staff only"; auth_basic_user_file {root}/htpasswd; }}
    location = /status-500 {{ return 500; }}
    location ~ \\.php$ {{ include /etc/nginx/fastcgi_params; fastcgi_pass 127.0.0.1:{fastcgi_port}; }}
  }}
}}
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse(response):
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ")[1] if len(lines[0].split(b" ")) > 1 else b""
    headers = [line.split(b":", 1) for line in lines[1:] if b":" in line]
    return status, [(n, v.strip()) for n, v in headers], body


# --- part 1: the persona serves its routes --------------------------------


def get(port, target, method=b"GET", body=b""):
    raw = (method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n")
    if body:
        raw += (b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n")
    return parse(probe_harness.send_raw(port, raw + b"\r\n" + body))


def check_routes(port, failures):
    checks = 0

    def expect(label, condition):
        nonlocal checks
        checks += 1
        if not condition:
            failures.append(f"route {label}")

    status, headers, body = get(port, b"/")
    expect("/ is 200 with the site's name", status == b"200" and b"Kestrel Cycle Works" in body)
    expect("/ carries the comment trap", b"/backup-2019/" in body)
    expect("/ names nginx in Server", (b"Server", b"nginx/1.22.1") in headers)
    expect("/ sends no Keep-Alive", all(n.lower() != b"keep-alive" for n, _ in headers))
    status, headers, body = get(port, b"/login.php")
    expect("/login.php has the bait field", status == b"200" and b"newsletter_opt" in body)
    expect("/login.php sets PHPSESSID",
           any(n == b"Set-Cookie" and v.startswith(b"PHPSESSID=") for n, v in headers))
    status, _, body = get(port, b"/register.php", b"POST",
                          b"username=admin&email=a%40b.c&password=x&confirm=x")
    expect("/register.php answers taken", b"Somebody already uses this user name." in body)
    status, headers, _ = get(port, b"/blog/post.php?id=1", b"POST",
                             b"name=a&email=a%40b.c&comment=hello")
    expect("/blog/post.php redirects after a comment",
           status == b"302" and (b"Location", b"/blog/post.php?id=1&pending=1") in headers)
    status, _, body = get(port, b"/shop/product.php?id=2")
    expect("/shop/product.php?id=2 shows the product",
           status == b"200" and b"Tubeless sealant, 500 ml" in body)
    status, _, body = get(port, b"/shop/cart.php", b"POST", b"coupon=spoke10")
    expect("/shop/cart.php accepts the voucher", b"Voucher redeemed" in body)
    status, _, body = get(port, b"/contact.php")
    expect("/contact.php is a form", status == b"200" and b"<form" in body)
    status, _, body = get(port, b"/robots.txt")
    expect("/robots.txt advertises the robots trap", b"Disallow: /staff-old/" in body)
    status, headers, body = get(port, b"/.env")
    expect("/.env is 200 with a honeytoken", status == b"200" and b"AWS_ACCESS_KEY_ID=AKIA" in body)
    expect("/.env is application/octet-stream",
           (b"Content-Type", b"application/octet-stream") in headers)
    status, _, body = get(port, b"/.git/config")
    expect("/.git/config is 200", status == b"200" and b"[remote \"origin\"]" in body)
    status, headers, _ = get(port, b"/staff-old/")
    expect("/staff-old/ asks for credentials",
           status == b"401" and (b"WWW-Authenticate", b'Basic realm="Workshop staff"') in headers)
    status, _, _ = get(port, b"/nginx_status")
    expect("/nginx_status is 403", status == b"403")
    return checks


# --- part 2 and 3: comparison with nginx -----------------------------------


# --- a FastCGI test double in place of PHP-FPM ------------------------------
#
# PHP is not installed on the build machines. This double replies to every
# FastCGI request with the headers PHP 8.2 sends for a page that starts a
# session and sets a cookie (written by hand, not captured), so that the test
# sees where nginx puts its own headers around a FastCGI answer and where its
# gzip filter adds Content-Encoding. That part comes from the real nginx.

PHP_HEADERS = (b"X-Powered-By: PHP/8.2.36\r\n"
               b"Set-Cookie: PHPSESSID=0123456789abcdefghijklmnop; path=/\r\n"
               b"Expires: Thu, 19 Nov 1981 08:52:00 GMT\r\n"
               b"Cache-Control: no-store, no-cache, must-revalidate\r\n"
               b"Pragma: no-cache\r\n"
               b"Set-Cookie: account_tier=visitor; path=/\r\n"
               b"Content-type: text/html; charset=UTF-8\r\n\r\n")
PHP_BODY = b"<!DOCTYPE html>\n<html><body>" + b"<p>FastCGI test double</p>\n" * 20 + b"</body></html>\n"


def fastcgi_record(kind, request_id, data):
    return struct.pack(">BBHHBB", 1, kind, request_id, len(data), 0, 0) + data


def serve_fastcgi(listener):
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            buffer = b""
            request_id = 1
            finished = False
            while not finished:
                data = conn.recv(65536)
                if not data:
                    break
                buffer += data
                offset = 0
                while offset + 8 <= len(buffer):
                    _, kind, request_id, length, padding, _ = struct.unpack(
                        ">BBHHBB", buffer[offset:offset + 8])
                    if kind == 5 and length == 0:  # the empty FCGI_STDIN record ends the request
                        finished = True
                    offset += 8 + length + padding
            if finished:
                conn.sendall(fastcgi_record(6, request_id, PHP_HEADERS + PHP_BODY)
                             + fastcgi_record(6, request_id, b"")
                             + fastcgi_record(3, request_id, b"\0" * 8))


def start_fastcgi():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    threading.Thread(target=serve_fastcgi, args=(listener,), daemon=True).start()
    return listener


def start_nginx(fastcgi_port):
    root = pathlib.Path(tempfile.mkdtemp(prefix="webtrap-nginx-"))
    os.chmod(root, 0o755)
    html = root / "html"

    (html / "backup-2019").mkdir(parents=True)
    (html / "admin").mkdir()
    for name in ("robots.txt", "style.css"):
        shutil.copy(PERSONA / "static" / name, html / name)
    (html / ".htaccess").write_text("deny from all\n")
    (html / ".env").write_text("APP_ENV=prod\n")
    for path in html.rglob("*"):
        os.utime(path, (LAST_MODIFIED, LAST_MODIFIED))
    (root / "htpasswd").write_text("")

    port = free_port()
    (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=port,
                                                       fastcgi_port=fastcgi_port))
    process = subprocess.Popen([NGINX, "-c", str(root / "nginx.conf"), "-p", str(root)],
                               stdout=open(root / "stdout.log", "wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port, root
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    process.wait()
    error_log = root / "error.log"
    message = error_log.read_text() if error_log.exists() else "no error log"
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError("nginx did not start: " + message)


def requests(port):
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    close = host + b"Connection: close\r\n"
    return {
        "nonexistent": b"GET /nonexistent HTTP/1.1\r\n" + close + b"\r\n",
        "nonexistent_keep_alive": b"GET /nonexistent HTTP/1.1\r\n" + host
        + b"Connection: keep-alive\r\n\r\n",
        "robots": b"GET /robots.txt HTTP/1.1\r\n" + close + b"\r\n",
        "style": b"GET /style.css HTTP/1.1\r\n" + close + b"\r\n",
        "http10": b"GET /robots.txt HTTP/1.0\r\n\r\n",
        "env_file": b"GET /.env HTTP/1.1\r\n" + close + b"\r\n",
        "htaccess": b"GET /.htaccess HTTP/1.1\r\n" + close + b"\r\n",
        "admin_without_auth": b"GET /admin/ HTTP/1.1\r\n" + close + b"\r\n",
        "directory_no_slash": b"GET /backup-2019 HTTP/1.1\r\n" + close + b"\r\n",
        "put_static": b"PUT /robots.txt HTTP/1.1\r\nContent-Length: 0\r\n" + close + b"\r\n",
        "delete_static": b"DELETE /robots.txt HTTP/1.1\r\n" + close + b"\r\n",
        "no_host": b"GET /robots.txt HTTP/1.1\r\n\r\n",
        "bad_request": b"GARBAGE\r\n\r\n",
        "uri_too_long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + close + b"\r\n",
    }


# Headers whose values the persona format cannot make equal to nginx's
# (docs/personas.md lists why), so only their names are compared.
NAMES_ONLY = {b"Date", b"Connection", b"ETag", b"Last-Modified"}


def normalise(response, port, names_only=NAMES_ONLY):
    response = response.replace(str(port).encode(), b"(port)")
    _, headers, body = parse(response)
    status_line = response.split(b"\r\n", 1)[0]
    shown = [(n, b"" if n in names_only else v) for n, v in headers]
    return status_line, shown, body


def compare_requests(nginx_port, probe_port, failures):
    nginx_requests = requests(nginx_port)
    probe_requests = requests(probe_port)
    for name, raw in nginx_requests.items():
        names_only = NAMES_ONLY
        if name == "env_file":
            # The persona's .env differs from the one in nginx's root, but
            # its Content-Type must be nginx's default_type.
            names_only = (NAMES_ONLY - {b"Content-Type"}) | {b"Content-Length"}
        expected = normalise(probe_harness.send_raw(nginx_port, raw), nginx_port, names_only)
        actual = normalise(probe_harness.send_raw(probe_port, probe_requests[name]), probe_port, names_only)
        if name == "env_file":
            expected, actual = expected[:2], actual[:2]
        if expected != actual:
            failures.append(f"{name}: differs\n  nginx: {expected!r:.600}\n  probe: {actual!r:.600}")
        else:
            print(f"ok {name}")
    return len(nginx_requests)


def read_response(port, raw):
    """Reads until the connection closes, without half-closing it first:
    nginx drops a FastCGI request whose client has shut down its side."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def compare_php_headers(nginx_port, probe_port, failures):
    """Header names of a PHP page, in order. The persona sends Content-Length
    where nginx sends Transfer-Encoding: chunked."""
    cases = {
        "php_page": b"",
        "php_page_gzip": b"Accept-Encoding: gzip\r\n",
        "php_page_keep_alive": b"Connection: keep-alive\r\n",
    }
    for name, extra in cases.items():
        close = b"" if b"keep-alive" in extra else b"Connection: close\r\n"
        raw = b"GET /login.php HTTP/1.1\r\nHost: 127.0.0.1\r\n" + close + extra + b"\r\n"
        if b"keep-alive" in extra:
            # One request on a kept-alive connection: read the head only.
            with socket.create_connection(("127.0.0.1", nginx_port), timeout=10) as sock:
                sock.sendall(raw)
                nginx_raw = b""
                while b"\r\n\r\n" not in nginx_raw:
                    data = sock.recv(65536)
                    if not data:
                        break
                    nginx_raw += data
        else:
            nginx_raw = read_response(nginx_port, raw)
        probe_raw = probe_harness.send_raw(probe_port, raw)
        nginx_names = [b"Content-Length" if n == b"Transfer-Encoding" else n
                       for n, _ in parse(nginx_raw)[1]]
        probe_names = [n for n, _ in parse(probe_raw)[1]]
        if nginx_names != probe_names:
            failures.append(f"{name}: header names differ\n  nginx: {nginx_names}\n"
                            f"  probe: {probe_names}")
        else:
            print(f"ok {name}: {b', '.join(probe_names).decode()}")
    return len(cases)


def compare_error_pages(nginx_port, failures):
    host = f"Host: 127.0.0.1:{nginx_port}\r\nConnection: close\r\n".encode()
    triggers = {
        301: b"GET /backup-2019 HTTP/1.1\r\n" + host + b"\r\n",
        400: b"GARBAGE\r\n\r\n",
        401: b"GET /admin/ HTTP/1.1\r\n" + host + b"\r\n",
        403: b"GET /.htaccess HTTP/1.1\r\n" + host + b"\r\n",
        404: b"GET /nonexistent HTTP/1.1\r\n" + host + b"\r\n",
        405: b"PUT /robots.txt HTTP/1.1\r\nContent-Length: 0\r\n" + host + b"\r\n",
        413: b"POST /robots.txt HTTP/1.1\r\nContent-Length: 4096\r\n" + host + b"\r\n",
        414: b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + host + b"\r\n",
        500: b"GET /status-500 HTTP/1.1\r\n" + host + b"\r\n",
        501: b"POST /robots.txt HTTP/1.1\r\nTransfer-Encoding: foo\r\n" + host + b"\r\n",
    }
    files = sorted(p.stem for p in (PERSONA / "errors").glob("*.html"))
    if sorted(str(s) for s in triggers) != files:
        failures.append(f"error pages: the persona has {files}, the test covers {list(triggers)}")
    version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr
    server = re.search(r"nginx/[0-9.]+", version).group(0).encode()
    for status, raw in triggers.items():
        got_status, headers, body = parse(probe_harness.send_raw(nginx_port, raw))
        page = (PERSONA / "errors" / f"{status}.html").read_bytes().replace(b"{{server}}", server)
        if got_status != str(status).encode():
            failures.append(f"error page {status}: nginx answered {got_status!r}")
        elif page != body:
            failures.append(f"error page {status}: differs\n  nginx: {body!r}\n  file:  {page!r}")
        else:
            print(f"ok error page {status}")
    return len(triggers)


def main():
    failures = []
    probe = probe_harness.Probe("sensor:\n  id: test-probe\npersona: nginx-debian-php\n")
    nginx = None
    nginx_root = None
    fastcgi = None
    total = 0
    try:
        total += check_routes(probe.http_port, failures)
        print(f"routes: {total} checks, {len(failures)} failed")
        if not os.access(NGINX, os.X_OK):
            print(f"SKIP: {NGINX} is not installed (Debian package nginx); "
                  "the comparison with nginx did not run")
        else:
            fastcgi = start_fastcgi()
            nginx, nginx_port, nginx_root = start_nginx(fastcgi.getsockname()[1])
            version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr
            if "nginx/1.22.1" not in version:
                print(f"note: the persona names nginx/1.22.1, installed: {version.strip()}")
            total += compare_requests(nginx_port, probe.http_port, failures)
            total += compare_error_pages(nginx_port, failures)
            total += compare_php_headers(nginx_port, probe.http_port, failures)
    finally:
        probe.stop()
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        if fastcgi is not None:
            fastcgi.close()
        if nginx_root is not None:
            shutil.rmtree(nginx_root, ignore_errors=True)
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"{total - len(failures)} passed, {len(failures)} failed")
    if failures:
        return 1
    return 0 if nginx_root is not None else 77


if __name__ == "__main__":
    sys.exit(main())
