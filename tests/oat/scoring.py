"""Address rewriting, merging and scoring for the OAT evaluation.

Every scenario runs against its own probe on 127.0.0.1, so all records carry
the client address 127.0.0.1. Before the records reach the collector, each
scenario run (one "source") gets its own documentation address (RFC 5737:
192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24). The rewrite changes data
only: no packet is ever sent to those addresses.

Scoring works per source and per OAT id. A source is predicted to be an OAT
when any stored document of that source has a tag of that id with at least
PREDICTION_CONFIDENCE, unless the tag is provisional and the collector
withdrew its verdict later: the newest verdict of the tag's key and id
(webtrap.oat_verdicts of the key's later documents) is "withdrawn". The
figures thus measure what the collector's documents finally tell an
analyst. The same table is also computed for every id in
threat.technique.id, as stored, and for behavioural tags alone (see VIEWS).
Precision and recall per OAT are taken over all sources, and per-record
figures are given for information.
"""

import copy
import datetime
import zlib

DOCUMENTATION_NETWORKS = ("192.0.2.", "198.51.100.", "203.0.113.")
SENSOR_IDS = ("eval-probe-a", "eval-probe-b")
TARGET = 0.9
# A source is predicted to be an OAT when one of its documents has a tag of
# that OAT with at least this confidence. Per-request tags that name every
# candidate of an ambiguous request (a login POST is OAT-007 or OAT-008) stay
# below it by the ontology's design.
PREDICTION_CONFIDENCE = 0.5
# The ways of reading a document's tags: "predicted" (confidence at least
# PREDICTION_CONFIDENCE, the figures the target applies to), "any" (every tag
# in threat.technique.id) and "behaviour" (behavioural tags only).
VIEWS = ("predicted", "any", "behaviour")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def documentation_address(index):
    """Return the documentation address of source number `index` (0-based).

    Sources take turns over the three RFC 5737 networks, from host .10 up, so
    neighbouring sources also differ in their /24.
    """
    network = DOCUMENTATION_NETWORKS[index % len(DOCUMENTATION_NETWORKS)]
    host = 10 + index // len(DOCUMENTATION_NETWORKS)
    if host > 254:
        raise ValueError(f"source index {index} is past the documentation address space")
    return f"{network}{host}"


def parse_timestamp(text):
    """Parse webtrap.@timestamp ("2026-12-04T18:43:06.624059Z") as an aware datetime."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


def format_timestamp(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_ctime(moment):
    """Format like transaction.time_stamp: ctime(3) layout in UTC, "Fri Dec  4 18:43:06 2026"."""
    moment = moment.astimezone(datetime.timezone.utc)
    return (f"{_DAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} {moment.day:2d} "
            f"{moment:%H:%M:%S} {moment.year}")


def sensor_for(source, record):
    """Pick one of the two sensor ids for a record, stable per connection.

    A source's connections spread over both sensors, as for a client that
    reaches two probes behind one name, so behaviour over both can be seen.
    """
    connection = record.get("webtrap", {}).get("connection", {}).get("id", "")
    return SENSOR_IDS[zlib.crc32(f"{source}/{connection}".encode()) % len(SENSOR_IDS)]


def rewrite_run(records, source, address, start):
    """Return copies of one run's records as if sent from `address` by two probes.

    Sets the client address, splits the records between the two sensor ids,
    and shifts every timestamp so that the run's first record is at `start`
    (an aware datetime), keeping the time between records.
    """
    if not records:
        return []
    first = min(parse_timestamp(r["webtrap"]["@timestamp"]) for r in records)
    shift = start - first
    rewritten = []
    for record in records:
        copy_ = copy.deepcopy(record)
        transaction = copy_["transaction"]
        webtrap = copy_["webtrap"]
        transaction["client_ip"] = address
        sensor = sensor_for(source, record)
        transaction["server_id"] = sensor
        webtrap.setdefault("sensor", {})["id"] = sensor
        moment = parse_timestamp(webtrap["@timestamp"]) + shift
        webtrap["@timestamp"] = format_timestamp(moment)
        transaction["time_stamp"] = format_ctime(moment)
        rewritten.append(copy_)
    return rewritten


def merge_runs(runs):
    """Merge lists of rewritten records into one list ordered by @timestamp."""
    merged = [record for run in runs for record in run]
    merged.sort(key=lambda r: r["webtrap"]["@timestamp"])
    return merged


def note_verdicts(verdicts, document):
    """Update `verdicts`, {(key, OAT id): status}, from one document's webtrap.oat_verdicts.

    Documents must be passed in the order the collector stored them, so the
    last status kept per key and id is the newest.
    """
    for verdict in document.get("webtrap", {}).get("oat_verdicts", []) or []:
        verdicts[(verdict.get("key"), verdict.get("id"))] = verdict.get("status")


def document_tags(document, verdicts=None):
    """Return the OAT ids of one stored ECS document per view (see VIEWS).

    A document keeps one tag per id in webtrap.oat, the one with the highest
    confidence, so "predicted" contains the ids tagged at PREDICTION_CONFIDENCE
    or more by any tag. A provisional tag whose verdict is "withdrawn" in
    `verdicts` ({(key, OAT id): newest status}) counts in neither "predicted"
    nor "behaviour"; "any" is threat.technique.id as stored.
    """
    verdicts = verdicts or {}
    technique = document.get("threat", {}).get("technique", {}).get("id", [])
    if isinstance(technique, str):
        technique = [technique]
    ids = {"predicted": set(), "any": set(technique), "behaviour": set()}
    for tag in document.get("webtrap", {}).get("oat", []) or []:
        if tag.get("provisional") and \
                verdicts.get((tag.get("key"), tag.get("id"))) == "withdrawn":
            continue
        if tag.get("basis") == "behaviour":
            ids["behaviour"].add(tag.get("id"))
        if tag.get("confidence", 0) >= PREDICTION_CONFIDENCE:
            ids["predicted"].add(tag.get("id"))
    return ids


def withdrawn_tags(document, verdicts):
    """Return the ids of the document's provisional tags whose newest verdict is "withdrawn"."""
    return {tag.get("id") for tag in document.get("webtrap", {}).get("oat", []) or []
            if tag.get("provisional")
            and verdicts.get((tag.get("key"), tag.get("id"))) == "withdrawn"}


def note_reasons(reasons, document):
    """Count each tag's reason per OAT id: the rule reason as it is, one key for behaviour.

    `reasons` maps OAT id to {key: [count, first reason seen, max confidence]},
    so a report can show why a source got an OAT.
    """
    for tag in document.get("webtrap", {}).get("oat", []) or []:
        basis = tag.get("basis", "")
        reason = tag.get("reason", "")
        key = f"behaviour ({reason.split(' ', 1)[0]})" if basis == "behaviour" else reason
        slot = reasons.setdefault(tag.get("id"), {}).setdefault(key, [0, reason, 0.0])
        slot[0] += 1
        slot[2] = max(slot[2], tag.get("confidence", 0.0))


def note_rule_data(rule_data, document):
    """Keep the first matched data that each CRS rule id reported on one source.

    `rule_data` maps rule id to the `data` of the first `webtrap.rules` entry
    seen with that id, so a report can show what a rule matched.
    """
    for rule in document.get("webtrap", {}).get("rules", []) or []:
        rule_id = rule.get("id")
        if rule_id and rule.get("data") and rule_id not in rule_data:
            rule_data[rule_id] = rule["data"]


def document_address(document):
    return document.get("source", {}).get("ip", "")


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def score(sources, documents):
    """Score OAT predictions per source against the sources' labels.

    `sources`: dicts with `name`, `address`, `labels` (OAT ids the run performs),
    optional `ignore` (OAT ids not scored for this source either way) and
    optional `quiet` (a normal browser: must get no behavioural tag).
    `documents`: stored ECS documents, in the order the collector stored them.

    Returns a dict with `per_source` (per source: the ids of each view,
    document count, tagged documents per view and OAT, tag reasons, the first
    matched data per CRS rule id, and `withdrawn`: per OAT id, the documents
    whose provisional tag was withdrawn later), one
    table per view (`oats` for "predicted", `oats_any`, `oats_behaviour`:
    per OAT id labelled, predicted, tp, fp, fn, precision, recall and
    per-record figures), `unmatched_documents` (documents from no known
    source) and `quiet_violations` (quiet sources with behavioural tags).
    """
    by_address = {}
    for source in sources:
        if source["address"] in by_address:
            raise ValueError(f"two sources share the address {source['address']}")
        by_address[source["address"]] = source

    per_source = {s["name"]: {**{view: set() for view in VIEWS}, "documents": 0,
                              "records_with": {view: {} for view in VIEWS}, "reasons": {},
                              "rule_data": {}, "withdrawn": {}}
                  for s in sources}
    # The newest verdict per key and id. Keys contain the client address, so
    # one table serves every source.
    verdicts = {}
    for document in documents:
        note_verdicts(verdicts, document)
    unmatched = 0
    for document in documents:
        source = by_address.get(document_address(document))
        if source is None:
            unmatched += 1
            continue
        entry = per_source[source["name"]]
        entry["documents"] += 1
        for oat in withdrawn_tags(document, verdicts):
            entry["withdrawn"][oat] = entry["withdrawn"].get(oat, 0) + 1
        for view, ids in document_tags(document, verdicts).items():
            entry[view] |= ids
            counts = entry["records_with"][view]
            for oat in ids:
                counts[oat] = counts.get(oat, 0) + 1
        note_reasons(entry["reasons"], document)
        note_rule_data(entry["rule_data"], document)

    quiet_violations = []
    for source in sources:
        if source.get("quiet") and per_source[source["name"]]["behaviour"]:
            quiet_violations.append(
                f"{source['name']}: behavioural tags "
                f"{sorted(per_source[source['name']]['behaviour'])} on quiet browsing")

    return {
        "per_source": per_source,
        "oats": _score_oats(sources, per_source, "predicted"),
        "oats_any": _score_oats(sources, per_source, "any"),
        "oats_behaviour": _score_oats(sources, per_source, "behaviour"),
        "unmatched_documents": unmatched,
        "quiet_violations": quiet_violations,
    }


def _score_oats(sources, per_source, view):
    oat_ids = set()
    for source in sources:
        oat_ids |= set(source["labels"])
        oat_ids |= per_source[source["name"]][view]
    table = {}
    for oat in sorted(oat_ids):
        row = {"labelled": 0, "predicted": 0, "tp": 0, "fp": 0, "fn": 0, "ignored": 0,
               "records_labelled": 0, "records_labelled_tagged": 0,
               "records_tagged": 0, "records_tagged_labelled": 0,
               "fp_sources": [], "fn_sources": []}
        for source in sources:
            entry = per_source[source["name"]]
            if oat in source.get("ignore", ()):
                row["ignored"] += 1
                continue
            labelled = oat in source["labels"]
            predicted = oat in entry[view]
            tagged_records = entry["records_with"][view].get(oat, 0)
            row["labelled"] += labelled
            row["predicted"] += predicted
            row["tp"] += labelled and predicted
            if predicted and not labelled:
                row["fp"] += 1
                row["fp_sources"].append(source["name"])
            if labelled and not predicted:
                row["fn"] += 1
                row["fn_sources"].append(source["name"])
            row["records_tagged"] += tagged_records
            if labelled:
                row["records_labelled"] += entry["documents"]
                row["records_labelled_tagged"] += tagged_records
                row["records_tagged_labelled"] += tagged_records
        row["precision"] = _ratio(row["tp"], row["tp"] + row["fp"])
        row["recall"] = _ratio(row["tp"], row["tp"] + row["fn"])
        row["record_precision"] = _ratio(row["records_tagged_labelled"], row["records_tagged"])
        row["record_recall"] = _ratio(row["records_labelled_tagged"], row["records_labelled"])
        table[oat] = row
    return table


def target_misses(result, target=TARGET):
    """Return (oat, metric, line) for each covered OAT figure below the target."""
    misses = []
    for oat, row in result["oats"].items():
        if row["labelled"] == 0:
            continue
        precision, recall = row["precision"], row["recall"]
        if precision is None or precision < target:
            misses.append((oat, "precision",
                           f"{oat}: precision {_show(precision)} < {target} "
                           f"(false positives: {', '.join(row['fp_sources']) or 'none'})"))
        if recall is None or recall < target:
            misses.append((oat, "recall",
                           f"{oat}: recall {_show(recall)} < {target} "
                           f"(missed: {', '.join(row['fn_sources']) or 'none'})"))
    return misses


def target_failures(result, target=TARGET):
    """Return one line per covered OAT (labelled on a source) below the target in `oats`.

    A missing precision (nothing predicted) counts as a miss, as does a
    quiet source with a behavioural tag.
    """
    return list(result["quiet_violations"]) + [line for _, _, line in target_misses(result, target)]


# Targets that the recorded evaluation misses, with their cause (see
# docs/oat-evaluation.md). The test fails on any other miss, and on a listed
# miss that no longer happens, so the list stays true.
KNOWN_MISSES = {}

# Figures that are met in some runs and missed in others, with the reason.
# A miss of one of these is accepted, and so is meeting it.
KNOWN_UNSTABLE = {}


def unexpected_failures(result, known=None, target=TARGET, unstable=None):
    """Return the target failures not in `known` or `unstable`, and each known miss that is now met.

    `unstable` defaults to KNOWN_UNSTABLE when `known` is not given, and to none otherwise.
    """
    if unstable is None:
        unstable = KNOWN_UNSTABLE if known is None else {}
    known = KNOWN_MISSES if known is None else known
    failures = list(result["quiet_violations"])
    missed = set()
    for oat, metric, line in target_misses(result, target):
        missed.add((oat, metric))
        if (oat, metric) not in known and (oat, metric) not in unstable:
            failures.append(line)
    for oat, metric in sorted(set(known) - missed):
        failures.append(f"{oat}: {metric} now meets {target}; remove it from KNOWN_MISSES")
    return failures


def _show(value):
    return "n/a" if value is None else f"{value:.2f}"
