#!/usr/bin/env python3
"""The apache-debian-php persona's form surfaces, driven with curl.

Starts a probe on loopback and sends each form of the persona (login,
registration, blog comment, contact, cart coupon, checkout) and the product
pages with curl. The tests check the responses: status, Location after a
POST that a PHP script would redirect, PHPSESSID, and the text on the page.
They also check webtrap.form in each record and validate every record
against docs/record-schema.json. Finally they check that no full card number
reached the spool or the probe log, whether it was sent in the checkout, in
a comment, in a query string or in a header.
"""

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys
import unittest

import jsonschema

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from probe_harness import SOURCE_DIR, Probe  # noqa: E402

CARD = "4111111111111111"
CARD_SPACED = "4111 1111 1111 1111"
CARD_DASHED = "5555-5555-5555-4444"
AMEX = "378282246310005"
MASKED = "411111******1111"


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value) in order
        self.body = body

    def header(self, name):
        for field_name, value in self.headers:
            if field_name.lower() == name.lower():
                return value
        return None


def curl(port, path, data=None, headers=(), form=None):
    """Send one request with curl, without following redirects, and parse the response."""
    command = ["curl", "-s", "-i", "--max-time", "20"]
    if data is not None:
        command += ["--data-raw", data]
    for field in form or ():
        command += ["-F", field]
    for header in headers:
        command += ["-H", header]
    command.append(f"http://127.0.0.1:{port}{path}")
    raw = subprocess.run(command, capture_output=True, check=True, timeout=30).stdout
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [tuple(line.split(": ", 1)) for line in lines[1:] if ": " in line]
    return Response(status, headers, body.decode("utf-8", "replace"))


class PersonaFormsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("curl"):
            raise unittest.SkipTest("curl is not installed")
        cls.probe = Probe("sensor:\n  id: forms-test\n")
        cls.port = cls.probe.http_port
        cls.sent = 0

    @classmethod
    def tearDownClass(cls):
        cls.probe.stop()

    def request(self, path, **kwargs):
        type(self).sent += 1
        return curl(self.port, path, **kwargs)

    def record_for(self, path, method="POST", body_part=""):
        """Return the one record of a `method` request to `path` whose body contains `body_part`.

        Inspection workers write records in any order, so a test names the
        record by its content, never by its place in the spool.
        """
        records = self.probe.wait_records(type(self).sent)
        matching = [r for r in records if r["transaction"]["request"]["uri"] == path
                    and r["transaction"]["request"]["method"] == method
                    and body_part in r["transaction"]["request"]["body"]]
        self.assertEqual(len(matching), 1, f"records for {method} {path} with {body_part!r}")
        return matching[0]

    def assert_php_session(self, response):
        cookie = response.header("Set-Cookie")
        self.assertIsNotNone(cookie)
        self.assertRegex(cookie, r"^PHPSESSID=[0-9a-v]{26}; path=/$")
        self.assertEqual(response.header("X-Powered-By"), "PHP/8.2.36")

    def test_navigation_links_new_pages(self):
        home = self.request("/")
        self.assertEqual(home.status, 200)
        for link in ("/blog/", "/shop/", "/register.php", "/contact.php", "/login.php"):
            self.assertIn(f'href="{link}"', home.body)
        shop = self.request("/shop/")
        self.assertIn('href="/shop/product.php?id=1"', shop.body)
        blog = self.request("/blog/")
        self.assertIn('href="/blog/post.php?id=1"', blog.body)

    def test_registration(self):
        form = self.request("/register.php")
        self.assertEqual(form.status, 200)
        self.assertIn('name="confirm"', form.body)
        self.assert_php_session(form)

        created = self.request(
            "/register.php", data="username=newbie&email=newbie%40mail.example"
            "&password=hunter2&confirm=hunter2")
        self.assertEqual(created.status, 302)
        self.assertEqual(created.header("Location"), "/register.php?registered=1")
        self.assertEqual(created.body, "")
        done = self.request("/register.php?registered=1")
        self.assertIn("Your account has been created", done.body)
        self.assertIn("check your inbox", done.body)

        taken_response = self.request(
            "/register.php", data="username=admin&email=a%40mail.example&password=x&confirm=x")
        self.assertEqual(taken_response.status, 200)
        self.assertIn("This username is already taken.", taken_response.body)

        record = self.record_for("/register.php", body_part="username=admin")
        form_facts = record["webtrap"]["form"]
        self.assertEqual(form_facts["kind"], "register")
        self.assertEqual(form_facts["username"], "admin")
        self.assertEqual(form_facts["email"], "a@mail.example")
        self.assertEqual(form_facts["password_sha256"], hashlib.sha256(b"x").hexdigest())
        self.assertEqual(record["webtrap"]["route"]["kind"], "register")
        get_record = self.record_for("/register.php?registered=1", method="GET")
        self.assertNotIn("form", get_record["webtrap"])

    def test_login_records_form_facts(self):
        failed = self.request("/login.php", data="user=root&pass=toor&bags=false")
        self.assertEqual(failed.status, 200)
        self.assertIn("Invalid username or password.", failed.body)
        form_facts = self.record_for("/login.php", body_part="user=root")["webtrap"]["form"]
        self.assertEqual(form_facts["kind"], "login")
        self.assertEqual(form_facts["username"], "root")
        self.assertEqual(form_facts["password_sha256"], hashlib.sha256(b"toor").hexdigest())

    def test_comment_spam_counts_links(self):
        post = self.request("/blog/post.php?id=1")
        self.assertIn('name="website"', post.body)
        spam = ("Cheap pills http://spam.example and [url=http://www.spam2.example]here[/url] "
                "www.spam3.example")
        from urllib.parse import quote_plus
        answer = self.request(
            "/blog/post.php?id=1",
            data="name=Spammer&email=s%40spam.example&website=http%3A%2F%2Fspam.example"
                 "&comment=" + quote_plus(spam))
        self.assertEqual(answer.status, 302)
        self.assertEqual(answer.header("Location"), "/blog/post.php?id=1&moderation=1")
        moderated = self.request("/blog/post.php?id=1&moderation=1")
        self.assertIn("Your comment is awaiting moderation.", moderated.body)

        form_facts = self.record_for("/blog/post.php?id=1",
                                     body_part="name=Spammer")["webtrap"]["form"]
        self.assertEqual(form_facts["kind"], "comment")
        self.assertEqual(form_facts["email"], "s@spam.example")
        self.assertEqual(form_facts["links"], 3)
        self.assertEqual(form_facts["text_bytes"], len(spam))

    def test_contact_kind(self):
        answer = self.request("/contact.php",
                              data="name=A&email=a%40b.example&message=hello+www.x.example")
        self.assertEqual(answer.status, 200)
        self.assertIn("Your message has been sent", answer.body)
        record = self.record_for("/contact.php", body_part="message=hello")
        self.assertEqual(record["webtrap"]["route"]["kind"], "contact")
        self.assertEqual(record["webtrap"]["form"]["kind"], "contact")
        self.assertEqual(record["webtrap"]["form"]["links"], 1)

    def test_product_page_and_missing_id(self):
        product = self.request("/shop/product.php?id=3")
        self.assertEqual(product.status, 200)
        self.assertIn("<h1>Pallet label printer</h1>", product.body)
        missing = self.request("/shop/product.php?id=42")
        self.assertEqual(missing.status, 404)
        self.assertIn("Product not found.", missing.body)
        self.assertEqual(missing.header("X-Powered-By"), "PHP/8.2.36")
        record = self.record_for("/shop/product.php?id=3", method="GET")
        self.assertEqual(record["webtrap"]["route"]["kind"], "product")

    def test_coupon_codes_recorded(self):
        added = self.request("/shop/cart.php", data="product_id=3&qty=2")
        self.assertEqual(added.status, 302)
        self.assertEqual(added.header("Location"), "/shop/cart.php?added=1")
        cart = self.request("/shop/cart.php?added=1")
        self.assertIn("The product has been added to your cart.", cart.body)
        self.assertIn('name="coupon"', cart.body)

        for code in ("AAAA", "SPRING23", "WINTER24"):
            answer = self.request("/shop/cart.php", data=f"coupon={code}")
            self.assertEqual(answer.status, 200)
            self.assertIn("This coupon is not valid.", answer.body)
        for code in ("AAAA", "SPRING23", "WINTER24"):
            record = self.record_for("/shop/cart.php", body_part=f"coupon={code}")
            self.assertEqual(record["webtrap"]["form"]["coupon"], code)
        valid = self.request("/shop/cart.php", data="coupon=spring24")
        self.assertIn("Coupon applied", valid.body)
        form_facts = self.record_for("/shop/cart.php", body_part="coupon=spring24")["webtrap"]["form"]
        self.assertEqual(form_facts["kind"], "coupon")
        self.assertEqual(form_facts["coupon"], "spring24")

    def test_checkout_declines_and_masks(self):
        page = self.request("/shop/checkout.php")
        self.assertIn('name="card_number"', page.body)
        declined = self.request(
            "/shop/checkout.php",
            data="card_name=Jane+Doe&card_number=4111+1111+1111+1111&expiry=12%2F27&cvv=123")
        self.assertEqual(declined.status, 200)
        self.assertIn("Payment declined.", declined.body)
        self.assert_php_session(declined)
        multipart = self.request(
            "/shop/checkout.php",
            form=["card_name=Jane Doe", f"card_number={AMEX}", "expiry=01/28", "cvv=1234"])
        self.assertIn("Payment declined.", multipart.body)

        # Only this test's checkouts name Jane Doe.
        records = [r for r in self.probe.wait_records(type(self).sent)
                   if r["transaction"]["request"]["uri"] == "/shop/checkout.php"
                   and "Jane" in r["transaction"]["request"]["body"]]
        self.assertEqual(len(records), 2)
        # Two inspection workers may write the records in either order, so
        # the record of the Visa number (masked as 4111+11**...) goes first.
        records.sort(key=lambda r: "4111" not in r["transaction"]["request"]["body"])
        first = records[0]
        cards = first["webtrap"]["form"]["cards"]
        self.assertEqual(len(cards), 1)
        self.assertEqual(cards[0]["bin"], "411111")
        self.assertEqual(cards[0]["last4"], "1111")
        self.assertTrue(cards[0]["luhn_valid"])
        self.assertRegex(cards[0]["fingerprint"], r"^[0-9a-f]{16}$")
        body = first["transaction"]["request"]["body"]
        self.assertIn("card_number=4111+11**+****+1111", body)
        self.assertTrue(first["webtrap"]["request"]["body_masked"])
        self.assertEqual(first["webtrap"]["request"]["body_sha256"],
                         hashlib.sha256(body.encode()).hexdigest())
        amex = records[1]["webtrap"]["form"]["cards"]
        self.assertEqual([(c["bin"], c["last4"]) for c in amex], [("378282", "0005")])

    def test_card_numbers_absent_from_spool_and_log(self):
        self.request(f"/shop/product.php?id=1&pan={CARD}")
        self.request("/search.php?q=" + CARD_SPACED.replace(" ", "+"))
        self.request("/", headers=[f"X-Card: {CARD_DASHED}", f"Referer: http://x.example/?cc={AMEX}"])
        self.request("/blog/post.php?id=1",
                     data=f"name=A&email=a%40b.example&comment=my+card+{CARD}+exp+12%2F27")
        self.request(f"/nonexistent/{CARD}")
        self.request("/shop/checkout.php",
                     data=f"card_name=X&card_number={CARD_DASHED}&expiry=1%2F29&cvv=1")
        records = self.probe.wait_records(type(self).sent)

        spool = b"".join(path.read_bytes() for path in self.probe.spool.glob("*.ndjson"))
        log = (self.probe.dir / "probe.log").read_bytes()
        digits_only = {CARD, "5555555555554444", AMEX}
        for number in digits_only | {CARD_SPACED, CARD_DASHED, CARD_SPACED.replace(" ", "+")}:
            self.assertNotIn(number.encode(), spool, number)
            self.assertNotIn(number.encode(), log, number)
        # webtrap.encoded keeps the exact bytes of non-UTF-8 strings in base64, so
        # decode and search them too.
        import base64
        for record in records:
            for pointer, value in record["webtrap"]["encoded"].items():
                decoded = base64.b64decode(value)
                for number in digits_only:
                    self.assertNotIn(number.encode(), decoded, pointer)
        self.assertIn(MASKED.encode(), spool)
        comment = self.record_for("/blog/post.php?id=1", body_part="my+card")
        self.assertEqual([(c["bin"], c["last4"]) for c in comment["webtrap"]["form"]["cards"]],
                         [("411111", "1111")])

    def test_records_match_schema(self):
        self.request("/shop/checkout.php", data=f"card_number={CARD}&expiry=1&cvv=1&card_name=x")
        schema = json.loads((SOURCE_DIR / "docs" / "record-schema.json").read_text())
        validator = jsonschema.Draft202012Validator(schema)
        for record in self.probe.wait_records(type(self).sent):
            errors = sorted(validator.iter_errors(record), key=lambda e: list(e.path))
            self.assertEqual(errors, [], record["transaction"]["request"]["uri"])


if __name__ == "__main__":
    unittest.main()
