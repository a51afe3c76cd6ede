#!/usr/bin/env python3
"""Validate probe records against docs/record-schema.json.

Validates every *.ndjson file in WEBTRAP_RECORDS_DIR when that is set (for
example a probe's spool folder). Otherwise runs the record_test binary built
next to WEBTRAP_BIN, which writes sample records, and validates those. Also
checks that the schema rejects broken records, so a schema that accepts
anything fails this test.
"""

import base64
import copy
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import jsonschema


def source_dir():
    env = os.environ.get("WEBTRAP_SOURCE_DIR")
    return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2]


def resolve_pointer(document, pointer):
    """Return the value at an RFC 6901 JSON pointer, or raise KeyError."""
    value = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, list):
            value = value[int(token)]
        else:
            value = value[token]
    return value


def load_records(folder):
    records = []
    for path in sorted(pathlib.Path(folder).glob("*.ndjson")):
        with open(path, "rb") as stream:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                # Records must be UTF-8 JSON whatever the request carried.
                text = line.decode("utf-8")
                records.append((f"{path.name}:{number}", json.loads(text)))
    return records


def write_samples(folder):
    binary = os.environ.get("WEBTRAP_RECORD_TEST_BIN")
    if not binary:
        webtrap_bin = os.environ.get("WEBTRAP_BIN")
        if not webtrap_bin:
            sys.exit("set WEBTRAP_RECORDS_DIR, WEBTRAP_RECORD_TEST_BIN or WEBTRAP_BIN")
        binary = pathlib.Path(webtrap_bin).parent / "tests" / "record_test"
    env = dict(os.environ, WEBTRAP_RECORD_SAMPLES_DIR=str(folder))
    subprocess.run([str(binary), "--gtest_filter=RecordSamples.*"], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def check_encoded(where, record):
    for pointer, encoded in record["webtrap"]["encoded"].items():
        value = resolve_pointer(record, pointer)
        if not isinstance(value, str):
            raise AssertionError(f"{where}: encoded pointer {pointer} is not a string")
        raw = base64.b64decode(encoded, validate=True)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        raise AssertionError(f"{where}: {pointer} is listed as encoded but is valid UTF-8")


def check_schema_rejects_broken(validator, record):
    broken = []
    missing = copy.deepcopy(record)
    del missing["webtrap"]["event_id"]
    broken.append(("missing webtrap.event_id", missing))
    mistyped = copy.deepcopy(record)
    mistyped["transaction"]["client_port"] = "51515"
    broken.append(("string client_port", mistyped))
    extra = copy.deepcopy(record)
    extra["webtrap"]["unknown"] = 1
    broken.append(("unknown webtrap field", extra))
    numeric_detail = copy.deepcopy(record)
    if numeric_detail["transaction"]["messages"]:
        numeric_detail["transaction"]["messages"][0]["details"]["ruleId"] = 942100
        broken.append(("numeric ruleId", numeric_detail))
    for name, document in broken:
        if validator.is_valid(document):
            raise AssertionError(f"the schema accepts a record with {name}")


def check_documented_example(validator):
    """Validate each complete record shown in docs/records.md."""
    text = (source_dir() / "docs" / "records.md").read_text()
    examples = 0
    for block in text.split("```json")[1:]:
        try:
            document = json.loads(block.split("```")[0])
        except json.JSONDecodeError:
            continue  # a fragment, not a whole record
        errors = list(validator.iter_errors(document))
        if errors:
            raise AssertionError(f"docs/records.md example: {errors[0].message}")
        examples += 1
    if examples == 0:
        raise AssertionError("docs/records.md shows no complete record")


def main():
    schema = json.loads((source_dir() / "docs" / "record-schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    folder = os.environ.get("WEBTRAP_RECORDS_DIR")
    with tempfile.TemporaryDirectory(prefix="webtrap-records-") as temporary:
        if not folder:
            write_samples(temporary)
            folder = temporary
        records = load_records(folder)

    if not records:
        sys.exit(f"no records found in {folder}")
    failures = 0
    for where, record in records:
        errors = sorted(validator.iter_errors(record), key=lambda error: list(error.path))
        for error in errors:
            failures += 1
            path = "/".join(str(part) for part in error.path)
            print(f"{where}: /{path}: {error.message}", file=sys.stderr)
        if not errors:
            check_encoded(where, record)

    with_messages = [record for _, record in records if record["transaction"]["messages"]]
    check_schema_rejects_broken(validator, with_messages[0] if with_messages else records[0][1])
    check_documented_example(validator)

    if failures:
        sys.exit(f"{failures} schema errors in {len(records)} records")
    print(f"{len(records)} records valid against record-schema.json")


if __name__ == "__main__":
    main()
