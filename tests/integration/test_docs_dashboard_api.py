#!/usr/bin/env python3
"""docs/dashboard.md must list the dashboard's API routes as the code serves them.

Reads DashboardHttp::api() in src/collector/dashboard_http.cpp and the query
functions in src/collector/dashboard_queries.cpp, and checks the route table
("| GET | `/dashboard/api/NAME` | parameters | returns |") in
docs/dashboard.md:
- the table lists every route that api() serves, and no other;
- each route's parameters cell names every parameter that api() reads for it;
- a route with a `limit` gives its default (`limitParameter(parameters, N)`)
  and its maximum: the lower of the clamp in limitParameter() and the clamp
  in the route's query function;
- every error message that api() returns appears in the page;
- the "unknown endpoint" message names every route.
"""

import os
import pathlib
import re
import sys

ROOT = pathlib.Path(os.environ.get("WEBTRAP_SOURCE_DIR",
                                   pathlib.Path(__file__).resolve().parents[2]))
HTTP_SOURCE = ROOT / "src" / "collector" / "dashboard_http.cpp"
QUERIES_SOURCE = ROOT / "src" / "collector" / "dashboard_queries.cpp"
DOC = ROOT / "docs" / "dashboard.md"

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}")


def function_body(text, signature):
    """The text from `signature` to the closing brace at the start of a line."""
    start = text.find(signature)
    if start < 0:
        return None
    end = text.find("\n}\n", start)
    return text[start:end if end >= 0 else len(text)]


def joined_literals(arguments):
    """The C++ string literals at the start of `arguments`, joined as the compiler joins them."""
    match = re.match(r'\s*((?:"(?:[^"\\]|\\.)*"\s*)+)', arguments)
    if not match:
        return None
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(1)))


def code_routes(http_text, queries_text):
    """Route name to (parameters, limit default or None, limit maximum or None)."""
    api = function_body(http_text, "Response DashboardHttp::api(")
    if api is None:
        fail(f"{HTTP_SOURCE}: DashboardHttp::api() not found; update this test")
        return {}, ""
    http_clamp = re.search(r"std::clamp<std::int64_t>\(\*number, 1, (\d+)\)", http_text)
    if not http_clamp:
        fail(f"{HTTP_SOURCE}: the clamp in limitParameter() not found; update this test")
        return {}, api
    http_max = int(http_clamp.group(1))
    routes = {}
    parts = re.split(r'if \(name == "(\w+)"\)', api)
    for name, block in zip(parts[1::2], parts[2::2]):
        parameters = set(re.findall(r'parameter\("(\w+)"\)', block))
        default = re.search(r"limitParameter\(parameters, (\d+)\)", block)
        maximum = None
        if default:
            parameters.add("limit")
            query = function_body(queries_text, f"DashboardQueries::{name}(")
            query_clamp = query and re.search(r"std::clamp\((?:limit|buckets), 1, (\d+)\)", query)
            maximum = min(http_max, int(query_clamp.group(1))) if query_clamp else http_max
        routes[name] = (parameters, int(default.group(1)) if default else None, maximum)
    return routes, api


def doc_rows(doc_text):
    """Route name to the parameters cell of its row in the route table."""
    rows = {}
    for line in doc_text.splitlines():
        match = re.match(r"\| GET \| `/dashboard/api/(\w+)` \|([^|]*)\|", line)
        if match:
            if match.group(1) in rows:
                fail(f"docs/dashboard.md lists /dashboard/api/{match.group(1)} twice")
            rows[match.group(1)] = match.group(2)
    return rows


def main():
    http_text = HTTP_SOURCE.read_text()
    routes, api = code_routes(http_text, QUERIES_SOURCE.read_text())
    doc_text = DOC.read_text()
    rows = doc_rows(doc_text)
    if len(routes) < 5:
        fail(f"found only {len(routes)} routes in DashboardHttp::api(); update this test")

    for name in sorted(routes.keys() - rows.keys()):
        fail(f"docs/dashboard.md has no row `| GET | `/dashboard/api/{name}` | ...` in its "
             "route table; add one with its parameters and response")
    for name in sorted(rows.keys() - routes.keys()):
        fail(f"docs/dashboard.md lists /dashboard/api/{name}, which DashboardHttp::api() "
             "does not serve; remove the row")

    for name in sorted(routes.keys() & rows.keys()):
        parameters, default, maximum = routes[name]
        row = rows[name]
        for parameter in sorted(parameters):
            if f"`{parameter}`" not in row:
                fail(f"/dashboard/api/{name}: the parameters cell does not name `{parameter}`")
        if default is None:
            if "`limit`" in row:
                fail(f"/dashboard/api/{name}: the parameters cell names `limit`, which the "
                     "route ignores")
            continue
        if f"default {default}," not in row:
            fail(f"/dashboard/api/{name}: the row does not say `default {default},` "
                 f"for limit (limitParameter(parameters, {default}) in the code)")
        if f"at most {maximum}" not in row:
            fail(f"/dashboard/api/{name}: the row does not say `at most {maximum}` for limit")

    messages = []
    for arguments in re.findall(r"jsonError\(request, http::status::\w+,(.*?)\);", api, re.S):
        message = joined_literals(arguments)
        if message is not None:
            messages.append(message)
    if len(messages) < 4:
        fail(f"found only {len(messages)} error messages in DashboardHttp::api(); "
             "update this test")
    for message in messages:
        if message not in doc_text:
            fail(f"docs/dashboard.md does not show the error message {message!r}")

    unknown = next((m for m in messages if m.startswith("unknown endpoint")), "")
    for name in sorted(routes):
        if not re.search(rf"\b{name}\b", unknown):
            fail(f"the unknown endpoint message does not name {name}: {unknown!r}")

    print(f"test_docs_dashboard_api: {len(routes)} routes, {len(messages)} error messages, "
          f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
