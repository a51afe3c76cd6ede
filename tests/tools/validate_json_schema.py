#!/usr/bin/env python3
"""Validate each line of an NDJSON file against a JSON Schema (draft 2020-12).

Usage: validate_json_schema.py SCHEMA NDJSON

Exit status: 0 when every line is valid, 1 when a line is invalid (each
error is printed with its line number and JSON path), 2 on a usage error or
a missing python3-jsonschema.
"""
import json
import sys


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import jsonschema
    except ImportError:
        print("validate_json_schema.py: the Python module jsonschema is missing; "
              "install the Debian package python3-jsonschema", file=sys.stderr)
        return 2

    with open(sys.argv[1], encoding="utf-8") as schema_file:
        schema = json.load(schema_file)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.FormatChecker())

    invalid = 0
    count = 0
    with open(sys.argv[2], encoding="utf-8") as documents:
        for number, line in enumerate(documents, start=1):
            if not line.strip():
                continue
            count += 1
            document = json.loads(line)
            errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
            for error in errors:
                path = "/".join(str(part) for part in error.absolute_path)
                print(f"line {number}: /{path}: {error.message}")
            if errors:
                invalid += 1
    if count == 0:
        print("validate_json_schema.py: no documents in " + sys.argv[2], file=sys.stderr)
        return 2
    print(f"{count - invalid} of {count} documents valid")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
