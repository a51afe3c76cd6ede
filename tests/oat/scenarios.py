"""Labelled scenarios of the OAT evaluation: real tools and scripted clients.

Each scenario is one source: one run of one tool or client, with the OAT ids
that the run performs (its labels). A driver gets a Context for a fresh probe on
127.0.0.1 and sends all of its traffic there. Variants of one kind of attack
differ in word lists, rates, user names and User-Agent, so that every OAT
has more than one labelled source.

Labels follow the OWASP Automated Threat Handbook v1.3 definitions, not what
the tagger happens to output.
"""

import concurrent.futures
import pathlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request

from clients import (BROWSER_AGENT, FIREFOX_AGENT, SAFARI_AGENT, Session, card_number,
                     parse_links, seeded)

DIRB_WORDLIST = pathlib.Path("/usr/share/dirb/wordlists/common.txt")

COMMON_PASSWORDS = [
    "123456", "password", "123456789", "12345678", "12345", "qwerty", "abc123", "111111",
    "1234567", "password1", "iloveyou", "sunshine", "princess", "admin", "welcome",
    "monkey", "dragon", "letmein", "football", "baseball", "master", "shadow", "superman",
    "trustno1", "passw0rd", "hello123", "freedom", "whatever", "qazwsx", "ninja",
    "mustang", "michael", "jennifer", "charlie", "starwars", "secret", "summer2024",
    "Winter2023!", "changeme", "P@ssw0rd", "root", "toor", "admin123", "test123",
]


class ScenarioError(AssertionError):
    """Raised when a scenario cannot produce its traffic (a tool failed, a form is missing)."""


# The site's name in the Host header of scripted clients and the browser. Only
# the header carries it: every connection goes to 127.0.0.1, and Chromium maps
# the name to 127.0.0.1 itself, so no name is ever looked up.
SITE_NAME = "www.northwind.example"


class Context:
    """What a driver gets: the probe's address, a work folder and the persona's routes."""

    def __init__(self, port, workdir, routes):
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.host = f"{SITE_NAME}:{port}"
        self.dir = pathlib.Path(workdir)
        self.routes = routes
        self.outputs = []
        # Values sent that must never appear in a record, log or store (full card numbers).
        self.secrets = set()

    def route(self, kind):
        """Return the path of the persona's first route of `kind`."""
        for route in self.routes:
            if route.get("kind") == kind:
                return route["path"]
        raise ScenarioError(f"the persona has no route of kind {kind!r}")

    def session(self, agent):
        """Return a scripted client that addresses the site by name (SITE_NAME)."""
        return Session(self.base_url, agent, host=self.host)

    def write(self, name, lines):
        path = self.dir / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def run(self, args, timeout, ok_codes=(0,)):
        """Run a tool with PORT in its arguments set to the probe's port and return its output."""
        args = [str(arg).replace("PORT", str(self.port)) for arg in args]
        try:
            result = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                    cwd=self.dir, errors="replace")
        except subprocess.TimeoutExpired as error:
            raise ScenarioError(f"{args[0]} did not finish within {timeout} s") from error
        output = result.stdout + result.stderr
        self.outputs.append((args, result.returncode, output))
        log_name = f"{pathlib.Path(args[0]).name}-{len(self.outputs)}.log"
        (self.dir / log_name).write_text(f"{args}\nexit {result.returncode}\n{output}")
        if result.returncode not in ok_codes:
            raise ScenarioError(f"{' '.join(args)} exited with {result.returncode}:\n"
                                f"{output[-2000:]}")
        return output


class Scenario:
    """One labelled source: a name, its OAT labels and the driver that makes its traffic."""

    def __init__(self, name, labels, description, driver, tools=(), kinds=(), ignore=(),
                 quiet=False):
        self.name = name
        self.labels = list(labels)
        self.description = description
        self.driver = driver
        self.tools = list(tools)    # programs that must be on PATH
        self.kinds = list(kinds)    # persona route kinds the driver needs
        self.ignore = list(ignore)  # OAT ids not scored for this source, either way
        self.quiet = quiet          # a normal browser: must get no behavioural tag

    def missing(self, routes):
        """Return why this scenario cannot run here, or an empty string."""
        tools = [tool for tool in self.tools if not shutil.which(tool)]
        if tools:
            return f"not installed: {', '.join(tools)} (run scripts/install-deps.sh --with-tests)"
        kinds = {route.get("kind") for route in routes}
        absent = [kind for kind in self.kinds if kind not in kinds]
        if absent:
            return f"the persona has no route of kind {', '.join(absent)}"
        return ""


# --- Credential cracking (OAT-007): one user name, a password list -----------

def login_template(ctx):
    """Return (login path, form) with the login form's field names read from the page."""
    path = ctx.route("login")
    form = ctx.session(BROWSER_AGENT).form_on(path, ("user", "password"))
    return path, form


def hydra_form_args(ctx, extra_option=""):
    path, form = login_template(ctx)
    fields = []
    for name, kind, value in form.fields:
        if kind in ("submit", "button"):
            continue
        if kind == "password":
            fields.append(f"{name}=^PASS^")
        elif kind == "hidden":
            fields.append(f"{name}={value}")
        else:
            fields.append(f"{name}=^USER^")
    action = form.action or path
    # hydra 9.4 reads the failure condition (F=) only as the last part.
    return f"{action}:{'&'.join(fields)}{extra_option}:F=Invalid username"


def hydra_cracking(user, passwords, tasks, agent=None):
    def drive(ctx):
        password_file = ctx.write("passwords.txt", passwords)
        option = ""
        if agent:
            option = ":H=User-Agent\\: " + agent.replace(":", "\\:")
        ctx.run(["hydra", "-l", user, "-P", password_file, "-s", "PORT", "-t", str(tasks),
                 "-w", "10", "-I", "127.0.0.1", "http-post-form", hydra_form_args(ctx, option)],
                timeout=120)
    return drive


def scripted_cracking(user, passwords, pause, agent):
    def drive(ctx):
        path, form = login_template(ctx)
        session = ctx.session(agent)
        for password in passwords:
            session.submit(path, form, {"user": user, "password": password})
            time.sleep(pause)
    return drive


# --- Credential stuffing (OAT-008): many user:password pairs ----------------

def credential_pairs(seed, count):
    rng = seeded(seed)
    first = ["anna", "ben", "carla", "david", "eva", "felix", "greta", "hans", "ines", "jonas",
             "klara", "lukas", "mia", "noah", "olga", "paul", "rosa", "simon", "tina", "uwe"]
    last = ["schmidt", "meyer", "weber", "wagner", "becker", "hoffmann", "koch", "richter",
            "klein", "wolf", "neumann", "braun"]
    domains = ["example.com", "example.net", "example.org"]
    pairs = []
    for index in range(count):
        user = f"{rng.choice(first)}.{rng.choice(last)}{rng.randrange(100)}@{rng.choice(domains)}"
        password = rng.choice(COMMON_PASSWORDS) + str(rng.randrange(1000))
        pairs.append((user, password))
    return pairs


def scripted_stuffing(seed, count, pause, agent, fetch_form_each_time):
    def drive(ctx):
        path, form = login_template(ctx)
        session = ctx.session(agent)
        for user, password in credential_pairs(seed, count):
            if fetch_form_each_time:
                session.get(path)
            session.submit(path, form, {"user": user, "password": password})
            time.sleep(pause)
    return drive


def hydra_stuffing(seed, count, tasks):
    def drive(ctx):
        combos = ctx.write("combos.txt", [f"{u}:{p}" for u, p in credential_pairs(seed, count)])
        ctx.run(["hydra", "-C", combos, "-s", "PORT", "-t", str(tasks), "-w", "10", "-I",
                 "127.0.0.1", "http-post-form", hydra_form_args(ctx)], timeout=120)
    return drive


# --- Vulnerability scanning (OAT-014) ----------------------------------------

def dirb_words(start, step, count):
    words = [line.strip() for line in DIRB_WORDLIST.read_text(errors="replace").splitlines()
             if line.strip() and not line.startswith("#")]
    return words[start::step][:count]


def gobuster(start, step, count, extensions=None, agent=None, threads=4):
    def drive(ctx):
        wordlist = ctx.write("words.txt", dirb_words(start, step, count))
        args = ["gobuster", "dir", "-u", "http://127.0.0.1:PORT/", "-w", wordlist,
                "-t", str(threads),
                "--timeout", "10s", "-q", "-z", "--no-error"]
        if extensions:
            args += ["-x", extensions]
        if agent:
            args += ["-a", agent]
        ctx.run(args, timeout=120)
    return drive


def dirb(start, step, count, extensions=None, delay_ms=None):
    """Run dirb without recursion. `extensions` is dirb's -X list, such as ".php,.bak"."""
    def drive(ctx):
        wordlist = ctx.write("words.txt", dirb_words(start, step, count))
        args = ["dirb", "http://127.0.0.1:PORT/", wordlist, "-r", "-S", "-w",
                "-o", ctx.dir / "dirb.txt"]
        if extensions:
            args += ["-X", extensions]
        if delay_ms:
            args += ["-z", str(delay_ms)]
        ctx.run(args, timeout=120)
    return drive


def sqlmap(target, techniques, extra=()):
    def drive(ctx):
        ctx.run(["sqlmap", "-u", "http://127.0.0.1:PORT" + target, "--batch",
                 f"--technique={techniques}", "--level=1", "--risk=1", "--threads=2",
                 "--timeout=5", "--retries=0", "--flush-session", "--disable-coloring",
                 f"--output-dir={ctx.dir / 'sqlmap'}", *extra], timeout=150)
    return drive


def wapiti(modules, max_scan_time, depth=2, agent=None):
    def drive(ctx):
        args = ["wapiti", "-u", "http://127.0.0.1:PORT/", "-m", modules, "--scope", "folder",
                "-d", str(depth), "--max-scan-time", str(max_scan_time), "--max-attack-time",
                str(max_scan_time // 2), "--flush-session", "-f", "txt", "-o",
                ctx.dir / "wapiti.txt", "--store-session", ctx.dir / "wapiti-session"]
        if agent:
            args += ["-A", agent]
        ctx.run(args, timeout=max_scan_time + 60)
    return drive


# --- Fingerprinting (OAT-004) and footprinting (OAT-018) ---------------------

def whatweb(aggression):
    def drive(ctx):
        ctx.run(["whatweb", "-a", str(aggression), "--color=never", "--open-timeout", "10",
                 "--read-timeout", "10", "http://127.0.0.1:PORT/"], timeout=120)
    return drive


def nmap(scripts, agent=None):
    def drive(ctx):
        # http.pipeline=1 turns nmap's pipelining off, because requests pipelined
        # behind a response that closes the connection are never read.
        script_args = "http.pipeline=1"
        if agent:
            script_args += f",http.useragent='{agent}'"
        ctx.run(["nmap", "-n", "-Pn", "-p", "PORT", "-sV", "--script", scripts,
                 "--script-args", script_args, "--host-timeout", "120s", "127.0.0.1"],
                timeout=180)
    return drive


# --- Scraping (OAT-011) ------------------------------------------------------

def wget_mirror(start, depth, agent=None, requisites=False, wait=None):
    """Mirror the site with wget from `start`, waiting `wait` seconds between requests (--wait)."""
    def drive(ctx):
        args = ["wget", "-r", "-l", str(depth), "-e", "robots=off", "--no-verbose",
                "-P", ctx.dir / "mirror", "--timeout=10", "--tries=1"]
        if agent:
            args += ["-U", agent]
        if requisites:
            args += ["--page-requisites"]
        if wait:
            args += [f"--wait={wait}"]
        # wget exits with 8 when the server sent an error status for some URL.
        ctx.run(args + ["http://127.0.0.1:PORT" + start], timeout=120, ok_codes=(0, 8))
    return drive


def price_scraper(max_id, agent):
    """Fetch the shop and blog indexes, then every product id from 1 to `max_id`, no pause."""
    def drive(ctx):
        session = ctx.session(agent)
        product_path = ctx.route("product")
        session.get(product_path.rsplit("/", 1)[0] + "/")
        session.get("/blog/")
        for product_id in range(1, max_id + 1):
            session.get(f"{product_path}?id={product_id}")
    return drive


def catalog_scraper(max_id, pause, agent):
    """Follow the shop's and blog's links to every item, then try product ids 1 to `max_id`.

    The scraper waits `pause` seconds after each page, as a scraper that
    paces itself to look less like a bot would.
    """
    def drive(ctx):
        session = ctx.session(agent)
        product_path = ctx.route("product")
        post_path = ctx.route("comment")
        pages = [product_path.rsplit("/", 1)[0] + "/", post_path.rsplit("/", 1)[0] + "/"]
        for index_page in pages:
            _, page = session.get(index_page)
            time.sleep(pause)
            for link in parse_links(page):
                if link.startswith(product_path) or link.startswith(post_path):
                    session.get(link)
                    time.sleep(pause)
        for product_id in range(1, max_id + 1):
            session.get(f"{product_path}?id={product_id}")
            time.sleep(pause)
    return drive


# --- Footprinting (OAT-018): what the site publishes about itself -----------

def footprinting(agent):
    """Read robots.txt and well-known metadata files, then visit each disallowed path."""
    def drive(ctx):
        session = ctx.session(agent)
        _, robots = session.get("/robots.txt")
        for path in ["/sitemap.xml", "/.well-known/security.txt", "/humans.txt",
                     "/crossdomain.xml", "/readme.html", "/CHANGELOG.txt", "/server-info"]:
            session.get(path)
        for line in robots.splitlines():
            if line.lower().startswith("disallow:"):
                path = line.split(":", 1)[1].strip()
                if path.startswith("/"):
                    session.get(path)
    return drive


# --- Account creation (OAT-019) ----------------------------------------------

def registration_bot(seed, count, pause, agent, fetch_form_each_time=False):
    def drive(ctx):
        rng = seeded(seed)
        path = ctx.route("register")
        session = ctx.session(agent)
        form = session.form_on(path, ("email",))
        for index in range(count):
            if fetch_form_each_time and index:
                form = session.form_on(path, ("email",))
            user = f"user{rng.randrange(10**6):06d}"
            session.submit(path, form, {
                "user": user, "name": user, "email": f"{user}@example.{rng.choice(['com', 'net'])}",
                "password": f"Pw{rng.randrange(10**8)}!"})
            time.sleep(pause)
    return drive


# --- Shop: the steps before a coupon or a payment -----------------------------

def fill_cart(ctx, session):
    """Open the shop, follow the first product link and add that product to the cart."""
    product_path = ctx.route("product")
    shop = product_path.rsplit("/", 1)[0] + "/"
    _, page = session.get(shop)
    links = [link for link in parse_links(page) if product_path in link]
    target = links[0] if links else product_path + "?id=1"
    form = session.form_on(target, ("quantity",))
    session.submit(target, form, {"quantity": "1"})


# --- Token cracking (OAT-002): coupon codes ----------------------------------

def coupon_codes(seed, count, pattern, valid=()):
    """Return `count` coupon codes to try: "sequential", "words", or "mixed".

    "mixed" is word-and-number codes with each code of `valid` put in at a
    random place, once as it is and once in lower case, as a list that was
    built from leaked codes would hold both.
    """
    rng = seeded(seed)
    if pattern == "sequential":
        base = rng.randrange(1000, 9000)
        return [f"NW-{base + index:04d}" for index in range(count)]
    words = ["SAVE", "WELCOME", "SPRING", "SUMMER", "BLACKFRIDAY", "FREESHIP", "VIP", "XMAS"]
    codes = [f"{rng.choice(words)}{rng.randrange(5, 80)}" for _ in range(count)]
    if pattern == "mixed":
        for code in valid:
            for variant in (code, code.lower()):
                codes[rng.randrange(len(codes))] = variant
    return codes


def coupon_enumeration(seed, count, pattern, pause, agent, valid=()):
    def drive(ctx):
        path = ctx.route("coupon")
        session = ctx.session(agent)
        fill_cart(ctx, session)
        form = session.form_on(path, ("coupon",))
        for code in coupon_codes(seed, count, pattern, valid):
            session.submit(path, form, {"coupon": code})
            time.sleep(pause)
    return drive


# --- Carding (OAT-001) and card cracking (OAT-010) ---------------------------

def checkout_attempts(attempts, pause, agent):
    """Submit the checkout form once per (card, expiry, cvv) in `attempts`."""
    def drive(ctx):
        path = ctx.route("checkout")
        session = ctx.session(agent)
        fill_cart(ctx, session)
        form = session.form_on(path, ("card",))
        ctx.secrets.update(card for card, _, _ in attempts)
        for card, expiry, cvv in attempts:
            session.submit(path, form, {"card": card, "expiry": expiry, "cvv": cvv,
                                        "name": "J Doe", "email": "j.doe@example.com"})
            time.sleep(pause)
    return drive


def carding(seed, count, pause, agent):
    rng = seeded(seed)
    prefixes = ["4", "51", "52", "53", "54", "55"]
    attempts = [(card_number(rng, rng.choice(prefixes)), f"{rng.randrange(1, 13):02d}/2{rng.randrange(6, 9)}",
                 f"{rng.randrange(1000):03d}") for _ in range(count)]
    return checkout_attempts(attempts, pause, agent)


def card_cracking(seed, count, pause, agent):
    rng = seeded(seed)
    card = card_number(rng, "4")
    attempts = [(card, f"{rng.randrange(1, 13):02d}/2{rng.randrange(6, 9)}",
                 f"{rng.randrange(1000):03d}") for _ in range(count)]
    return checkout_attempts(attempts, pause, agent)


# --- Spamming (OAT-017) ------------------------------------------------------

def spam_text(rng, links):
    words = ["cheap", "pills", "casino", "bonus", "crypto", "loans", "replica", "watches"]
    body = " ".join(rng.choice(words) for _ in range(12))
    urls = " ".join(f"http://spam{rng.randrange(100)}.example/{rng.choice(words)}"
                    for _ in range(links))
    return f"Great post! {body} {urls}"


def comment_spam(seed, count, links, pause, agent, kind):
    def drive(ctx):
        rng = seeded(seed)
        path = ctx.route(kind)
        session = ctx.session(agent)
        form = session.form_on(path, ("text",))
        for _ in range(count):
            session.submit(path, form, {
                "name": f"seo{rng.randrange(1000)}", "email": f"seo{rng.randrange(1000)}@example.net",
                "url": f"http://spam{rng.randrange(100)}.example/", "text": spam_text(rng, links)})
            time.sleep(pause)
    return drive


# --- Denial of service (OAT-015): a bounded flood ----------------------------

def apache_bench(count, concurrency, path, keep_alive=False):
    def drive(ctx):
        options = ["-k"] if keep_alive else []
        ctx.run(["ab", "-n", str(count), "-c", str(concurrency), "-s", "10", "-r", *options,
                 "http://127.0.0.1:PORT" + path], timeout=60)
    return drive


def scripted_flood(count, workers, paths):
    def drive(ctx):
        def fetch(index):
            url = ctx.base_url + paths[index % len(paths)]
            request = urllib.request.Request(url, headers={"User-Agent": FIREFOX_AGENT,
                                                           "Host": ctx.host})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
            except urllib.error.HTTPError:
                pass

        deadline = time.monotonic() + 45
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(fetch, index) for index in range(count)]:
                future.result(timeout=max(1, deadline - time.monotonic()))
    return drive


def paced_flood(count, workers, pause, paths, agent):
    """Send `count` requests from `workers` threads, each thread waiting `pause` s after a response."""
    def drive(ctx):
        request_paths = [paths[index % len(paths)] for index in range(count)]

        def fetch(path):
            request = urllib.request.Request(ctx.base_url + path,
                                             headers={"User-Agent": agent, "Host": ctx.host})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
            except urllib.error.HTTPError:
                pass
            time.sleep(pause)

        deadline = time.monotonic() + 45
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(fetch, path) for path in request_paths]:
                future.result(timeout=max(1, deadline - time.monotonic()))
    return drive


# --- Quiet browsing: a normal browser, no behavioural tag allowed -------------

def chromium_browsing(pages, pause, agent=None):
    """Load each page with headless Chromium, with its assets, pausing between pages.

    Each page is a separate Chromium start on one profile folder, so cookies
    carry over as they would in one browser.
    """
    def drive(ctx):
        profile = ctx.dir / "chromium-profile"
        for index, page in enumerate(pages):
            if index:
                time.sleep(pause)
            args = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--metrics-recording-only", "--no-default-browser-check",
                    f"--user-data-dir={profile}", "--virtual-time-budget=3000", "--dump-dom",
                    f"--host-resolver-rules=MAP {SITE_NAME} 127.0.0.1"]
            if agent:
                args.append(f"--user-agent={agent}")
            output = ctx.run(args + [f"http://{ctx.host}{page}"], timeout=60)
            if "</html>" not in output.lower():
                raise ScenarioError(f"chromium printed no page for {page}:\n{output[-1500:]}")
    return drive


SCENARIOS = [
    Scenario("hydra-cracking-a", ["OAT-007"],
             "hydra http-post-form on the login form: user admin, 44 common passwords, 4 tasks",
             hydra_cracking("admin", COMMON_PASSWORDS, 4), tools=["hydra"], kinds=["login"]),
    Scenario("hydra-cracking-b", ["OAT-007"],
             "hydra http-post-form: user j.smith, 30 passwords, 2 tasks, a Firefox User-Agent",
             hydra_cracking("j.smith", [p + "!" for p in COMMON_PASSWORDS[:30]], 2, FIREFOX_AGENT),
             tools=["hydra"], kinds=["login"]),
    Scenario("script-cracking-c", ["OAT-007"],
             "scripted client: user office@example.com, 25 passwords, 0.1 s apart, Chrome User-Agent",
             scripted_cracking("office@example.com", COMMON_PASSWORDS[10:35], 0.1, BROWSER_AGENT),
             kinds=["login"]),
    Scenario("script-stuffing-a", ["OAT-008"],
             "scripted credential-list replay: 40 user:password pairs, one session, Python User-Agent",
             scripted_stuffing("stuffing-a", 40, 0.0, "python-requests/2.31.0", False),
             kinds=["login"]),
    Scenario("script-stuffing-b", ["OAT-008"],
             "scripted replay: 30 pairs, login page fetched before each try, 0.1 s apart, Chrome User-Agent",
             scripted_stuffing("stuffing-b", 30, 0.1, BROWSER_AGENT, True), kinds=["login"]),
    Scenario("hydra-stuffing-c", ["OAT-008"],
             "hydra -C with a file of 35 user:password pairs, 4 tasks",
             hydra_stuffing("stuffing-c", 35, 4), tools=["hydra"], kinds=["login"]),
    Scenario("gobuster-a", ["OAT-014"],
             "gobuster dir: 200 words of dirb's common.txt, 4 threads",
             gobuster(0, 1, 200), tools=["gobuster"]),
    Scenario("gobuster-b", ["OAT-014"],
             "gobuster dir: 120 other words with -x php, a Chrome User-Agent",
             gobuster(7, 19, 120, "php", BROWSER_AGENT), tools=["gobuster"]),
    Scenario("dirb-a", ["OAT-014"],
             "dirb, not recursive: 250 words of dirb's common.txt",
             dirb(3, 11, 250), tools=["dirb"]),
    Scenario("sqlmap-a", ["OAT-014"],
             "sqlmap --batch --technique=BU on about.php?id=1",
             sqlmap("/about.php?id=1", "BU"), tools=["sqlmap"]),
    Scenario("sqlmap-b", ["OAT-014"],
             "sqlmap --batch --technique=BE on the query string of index.php, random User-Agent",
             sqlmap("/index.php?page=home&lang=en", "BE", ["--random-agent"]), tools=["sqlmap"]),
    Scenario("wapiti-a", ["OAT-014"],
             "wapiti with modules sql,xss,exec, depth 2, --max-scan-time 60",
             wapiti("sql,xss,exec", 60), tools=["wapiti"]),
    Scenario("whatweb-a", ["OAT-004"],
             "whatweb -a 1 (one request, passive plugins)",
             whatweb(1), tools=["whatweb"]),
    Scenario("whatweb-b", ["OAT-004", "OAT-018"],
             "whatweb -a 3 (aggressive: plugin-specific paths)",
             whatweb(3), tools=["whatweb"]),
    Scenario("nmap-a", ["OAT-004", "OAT-018"],
             "nmap -sV --script http-enum,http-headers,http-title",
             nmap("http-enum,http-headers,http-title"), tools=["nmap"]),
    Scenario("nmap-b", ["OAT-004"],
             "nmap -sV --script http-title,http-headers,http-methods",
             nmap("http-title,http-headers,http-methods"), tools=["nmap"]),
    Scenario("wget-mirror-a", ["OAT-011"],
             "wget -r -l 3 -e robots=off from /",
             wget_mirror("/", 3), tools=["wget"]),
    Scenario("wget-mirror-b", ["OAT-011"],
             "wget -r -l 5 -e robots=off --page-requisites from /about.php, a Firefox User-Agent",
             wget_mirror("/about.php", 5, FIREFOX_AGENT, requisites=True), tools=["wget"]),
    Scenario("price-scraper-c", ["OAT-011"],
             "scripted price scraper: shop and blog indexes, then product ids 1 to 40, no pause",
             price_scraper(40, "Mozilla/5.0 (compatible; PriceBot/2.1)"), kinds=["product"]),
    Scenario("footprint-script-c", ["OAT-018"],
             "scripted footprinting: robots.txt, well-known metadata files, each Disallow path",
             footprinting(BROWSER_AGENT)),
    Scenario("register-bot-a", ["OAT-019"],
             "scripted registration bot: 20 accounts, no pause, Python User-Agent",
             registration_bot("register-a", 20, 0.0, "python-requests/2.31.0"), kinds=["register"]),
    Scenario("register-bot-b", ["OAT-019"],
             "scripted registration bot: 12 accounts, 0.2 s apart, Chrome User-Agent",
             registration_bot("register-b", 12, 0.2, BROWSER_AGENT), kinds=["register"]),
    Scenario("coupon-enum-a", ["OAT-002"],
             "coupon enumeration: 40 word-and-number codes, no pause",
             coupon_enumeration("coupon-a", 40, "words", 0.0, "python-requests/2.31.0"),
             kinds=["coupon", "product"]),
    Scenario("coupon-enum-b", ["OAT-002"],
             "coupon enumeration: 30 sequential codes, 0.1 s apart, Chrome User-Agent",
             coupon_enumeration("coupon-b", 30, "sequential", 0.1, BROWSER_AGENT),
             kinds=["coupon", "product"]),
    Scenario("carding-a", ["OAT-001"],
             "carding: 25 different Luhn-valid card numbers at checkout, no pause",
             carding("carding-a", 25, 0.0, "python-requests/2.31.0"),
             kinds=["checkout", "product"]),
    Scenario("carding-b", ["OAT-001"],
             "carding: 15 different Luhn-valid card numbers, 0.2 s apart, Chrome User-Agent",
             carding("carding-b", 15, 0.2, BROWSER_AGENT), kinds=["checkout", "product"]),
    Scenario("card-cracking-a", ["OAT-010"],
             "card cracking: one card number, 30 expiry and security code guesses",
             card_cracking("cracking-a", 30, 0.0, "python-requests/2.31.0"),
             kinds=["checkout", "product"]),
    Scenario("card-cracking-b", ["OAT-010"],
             "card cracking: one card number, 20 guesses, 0.2 s apart, Chrome User-Agent",
             card_cracking("cracking-b", 20, 0.2, BROWSER_AGENT), kinds=["checkout", "product"]),
    Scenario("comment-spam-a", ["OAT-017"],
             "blog comment spam: 15 comments with 3 links each",
             comment_spam("spam-a", 15, 3, 0.0, "python-requests/2.31.0", "comment"),
             kinds=["comment"]),
    Scenario("contact-spam-b", ["OAT-017"],
             "contact form spam: 12 messages with 2 links each, 0.2 s apart, Chrome User-Agent",
             comment_spam("spam-b", 12, 2, 0.2, BROWSER_AGENT, "contact"), kinds=["contact"]),
    Scenario("ab-flood-a", ["OAT-015"],
             "ab -n 1500 -c 10 on / (bounded flood)",
             apache_bench(1500, 10, "/"), tools=["ab"]),
    Scenario("script-flood-b", ["OAT-015"],
             "scripted flood: 800 requests from 8 threads over 3 pages, Firefox User-Agent",
             scripted_flood(800, 8, ["/", "/about.php", "/contact.php"])),
    Scenario("ab-flood-c", ["OAT-015"],
             "ab -k -n 1000 -c 4 on about.php (keep-alive connections)",
             apache_bench(1000, 4, "/about.php", keep_alive=True), tools=["ab"]),
    Scenario("browse-chromium-a", [],
             "headless Chromium: 3 pages with their assets, 2 s apart",
             chromium_browsing(["/", "/about.php", "/contact.php"], 2.0),
             tools=["chromium"], quiet=True),
    Scenario("browse-chromium-b", [],
             "headless Chromium with a desktop Chrome User-Agent: 3 pages, 1.5 s apart",
             chromium_browsing(["/about.php", "/", "/login.php"], 1.5, BROWSER_AGENT),
             tools=["chromium"], quiet=True),
]


# The held-out set: runs written after the tagging rules were last changed and
# never used to change them. Each differs from the tuning set above in tool
# options, word lists, pacing, User-Agent or site paths, and together they
# cover the same OATs. `evaluate.py --set holdout` runs them.
EDGE_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/125.0.0.0 Safari/537.36 Edg/125.0.0.0")

HOLDOUT_SCENARIOS = [
    Scenario("gobuster-holdout", ["OAT-014"],
             "gobuster dir: 150 words of common.txt from another slice, 2 threads, Safari User-Agent",
             gobuster(5, 13, 150, agent=SAFARI_AGENT, threads=2), tools=["gobuster"]),
    Scenario("dirb-holdout", ["OAT-014"],
             "dirb -X .php,.bak -z 5: 100 words of common.txt, each with both extensions",
             dirb(2, 17, 100, ".php,.bak", 5), tools=["dirb"]),
    Scenario("sqlmap-holdout", ["OAT-014"],
             "sqlmap --batch --technique=EUQ -p sort on shop/product.php?id=2&sort=price, "
             "random User-Agent",
             sqlmap("/shop/product.php?id=2&sort=price", "EUQ", ["-p", "sort", "--random-agent"]),
             tools=["sqlmap"]),
    Scenario("wapiti-holdout", ["OAT-014"],
             "wapiti with modules file,redirect,crlf,backup, depth 3, Edge User-Agent, "
             "--max-scan-time 40",
             wapiti("file,redirect,crlf,backup", 40, depth=3, agent=EDGE_AGENT), tools=["wapiti"]),
    Scenario("whatweb-holdout", ["OAT-004", "OAT-018"],
             "whatweb -a 4 (heavy: the paths of every plugin)",
             whatweb(4), tools=["whatweb"]),
    Scenario("nmap-holdout", ["OAT-004", "OAT-018"],
             "nmap -sV --script http-enum,http-robots.txt,http-server-header,http-date",
             nmap("http-enum,http-robots.txt,http-server-header,http-date"), tools=["nmap"]),
    Scenario("wget-mirror-holdout", ["OAT-011"],
             "wget -r -l 2 --wait=0.2 -e robots=off from /blog/",
             wget_mirror("/blog/", 2, wait=0.2), tools=["wget"]),
    Scenario("catalog-scraper-holdout", ["OAT-011"],
             "scripted scraper: shop and blog items by their links, then product ids 1 to 20, "
             "0.3 s after each page, Edge User-Agent",
             catalog_scraper(20, 0.3, EDGE_AGENT), kinds=["product", "comment"]),
    Scenario("script-cracking-holdout", ["OAT-007"],
             "scripted cracking: user admin@northwind.example, 20 passwords with a year "
             "appended, 0.3 s apart, curl User-Agent",
             scripted_cracking("admin@northwind.example",
                               [p + "2024" for p in COMMON_PASSWORDS[20:40]], 0.3, "curl/8.5.0"),
             kinds=["login"]),
    Scenario("script-stuffing-holdout", ["OAT-008"],
             "slow credential-list replay: 25 pairs, login page fetched before each try, "
             "0.4 s apart, Firefox User-Agent",
             scripted_stuffing("stuffing-holdout", 25, 0.4, FIREFOX_AGENT, True),
             kinds=["login"]),
    Scenario("register-bot-holdout", ["OAT-019"],
             "registration bot: 10 accounts, form fetched before each, 0.5 s apart, "
             "Safari User-Agent",
             registration_bot("register-holdout", 10, 0.5, SAFARI_AGENT, True),
             kinds=["register"]),
    Scenario("coupon-enum-holdout", ["OAT-002"],
             "coupon enumeration: 25 codes, mixed valid (SPRING24, spring24) and invalid, "
             "0.2 s apart, Firefox User-Agent",
             coupon_enumeration("coupon-holdout", 25, "mixed", 0.2, FIREFOX_AGENT, ["SPRING24"]),
             kinds=["coupon", "product"]),
    Scenario("carding-holdout", ["OAT-001"],
             "carding: 12 different Luhn-valid card numbers, 0.3 s apart, Edge User-Agent",
             carding("carding-holdout", 12, 0.3, EDGE_AGENT), kinds=["checkout", "product"]),
    Scenario("card-cracking-holdout", ["OAT-010"],
             "card cracking: one card number, 15 expiry and security code guesses, 0.3 s apart, "
             "Safari User-Agent",
             card_cracking("cracking-holdout", 15, 0.3, SAFARI_AGENT),
             kinds=["checkout", "product"]),
    Scenario("comment-spam-holdout", ["OAT-017"],
             "blog comment spam: 8 comments with 1 link each, 0.5 s apart, Chrome User-Agent",
             comment_spam("spam-holdout", 8, 1, 0.5, BROWSER_AGENT, "comment"),
             kinds=["comment"]),
    Scenario("paced-flood-holdout", ["OAT-015"],
             "low-rate flood: 500 requests from 2 threads, 0.02 s after each response, "
             "over shop and blog pages, Chrome User-Agent",
             paced_flood(500, 2, 0.02, ["/shop/", "/blog/", "/shop/product.php?id=3"],
                         BROWSER_AGENT)),
    Scenario("browse-chromium-holdout", [],
             "headless Chromium with a Safari User-Agent: 6 pages with their assets, 1 s apart",
             chromium_browsing(["/", "/shop/", "/shop/product.php?id=2", "/blog/",
                                "/blog/post.php?id=1", "/about.php"], 1.0, SAFARI_AGENT),
             tools=["chromium"], quiet=True),
]

SCENARIO_SETS = {"tuning": SCENARIOS, "holdout": HOLDOUT_SCENARIOS}
