"""Scripted HTTP clients for the OAT scenarios: sessions, form discovery and filling.

Only the Python standard library: urllib with a cookie jar for requests and
html.parser to read the forms from the pages the probe serves, as a simple
bot would.
"""

import html.parser
import http.cookiejar
import random
import urllib.error
import urllib.parse
import urllib.request

BROWSER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                 "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36")
FIREFOX_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_AGENT = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
                "(KHTML, like Gecko) Version/17.5 Safari/605.1.15")


class Form:
    """One <form> of a page: its action, method and fields in document order."""

    def __init__(self, action, method):
        self.action = action
        self.method = method.lower()
        self.fields = []  # (name, type, value)

    def names(self):
        return [name for name, _, _ in self.fields]


class _FormParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms = []
        self.links = []
        self._current = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
        if tag == "form":
            self._current = Form(attributes.get("action") or "", attributes.get("method") or "get")
            self.forms.append(self._current)
        elif self._current is not None and tag in ("input", "textarea", "select"):
            name = attributes.get("name")
            if name:
                kind = attributes.get("type", "text") if tag == "input" else tag
                self._current.fields.append((name, kind.lower(), attributes.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def parse_forms(page):
    parser = _FormParser()
    parser.feed(page)
    parser.close()
    return parser.forms


def parse_links(page):
    """Return the href of every <a> of the page, in document order."""
    parser = _FormParser()
    parser.feed(page)
    parser.close()
    return parser.links


# Roles a scenario fills, each with the substrings of field names that take it,
# tried in this order. The first role whose pattern is in the field name wins.
ROLE_PATTERNS = [
    ("password", ("pass", "pwd")),
    ("email", ("mail",)),
    ("user", ("user", "login", "account")),
    ("name", ("name", "author", "holder")),
    ("card", ("card", "pan", "ccnum", "cc_number", "number")),
    ("expiry", ("exp",)),
    ("cvv", ("cvv", "cvc", "csc", "security")),
    ("coupon", ("coupon", "voucher", "promo", "code")),
    ("url", ("url", "website", "homepage")),
    ("text", ("comment", "message", "body", "text", "content")),
    ("quantity", ("qty", "quantity")),
]


def field_role(name, kind):
    lowered = name.lower()
    if kind == "password":
        return "password"
    if kind == "email":
        return "email"
    for role, patterns in ROLE_PATTERNS:
        if any(pattern in lowered for pattern in patterns):
            return role
    if kind == "textarea":
        return "text"
    return None


def fill_form(form, values):
    """Return the form's fields as (name, value) pairs with `values` filled in by role.

    Hidden fields keep their value, as a browser sends them. A field whose role
    is not in `values` keeps the page's value, and an empty quantity gets "1".
    Submit, button, image and reset inputs are left out.
    """
    pairs = []
    for name, kind, default in form.fields:
        if kind in ("submit", "button", "image", "reset"):
            continue
        if kind == "hidden":
            pairs.append((name, default))
            continue
        role = field_role(name, kind)
        if role in values:
            pairs.append((name, values[role]))
        elif role == "quantity":
            pairs.append((name, default or "1"))
        else:
            pairs.append((name, default))
    return pairs


class Session:
    """A client with its own cookies and User-Agent, talking to one probe.

    With `host`, each request carries that Host header while the connection
    still goes to `base_url` (loopback), as a client that reached the site by
    name would send it.
    """

    def __init__(self, base_url, agent, timeout=10, host=None):
        self.base_url = base_url.rstrip("/")
        self.agent = agent
        self.timeout = timeout
        self.headers = {"Host": host} if host else {}
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies))
        self.opener.addheaders = [("User-Agent", agent), ("Accept", "*/*")]

    def url(self, path):
        return path if path.startswith("http") else self.base_url + path

    def request(self, path, data=None, method=None):
        """Send one request and return (status, body text); an HTTP error status is not raised."""
        body = None
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
        request = urllib.request.Request(self.url(path), data=body, method=method,
                                         headers=self.headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8", "replace")

    def get(self, path):
        return self.request(path)

    def post(self, path, pairs):
        return self.request(path, data=pairs, method="POST")

    def form_on(self, path, required_roles=()):
        """Fetch `path` and return its first POST form that has every role in `required_roles`."""
        status, page = self.get(path)
        for form in parse_forms(page):
            if form.method != "post":
                continue
            roles = {field_role(name, kind) for name, kind, _ in form.fields}
            if all(role in roles for role in required_roles):
                return form
        raise AssertionError(f"{path} (status {status}) has no POST form with fields for "
                             f"{list(required_roles)}")

    def submit(self, page_path, form, values):
        action = form.action or page_path
        if not action.startswith("/") and not action.startswith("http"):
            action = page_path.rsplit("/", 1)[0] + "/" + action
        return self.post(action, fill_form(form, values))


def luhn_check_digit(digits):
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def card_number(rng, prefix="4", length=16):
    """Return a made-up card number that passes the Luhn check."""
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    return body + luhn_check_digit(body)


def seeded(name):
    return random.Random(name)
