#!/usr/bin/env python3
"""Write data/kibana/webtrap-dashboard.ndjson, the Kibana saved objects of the
webtrap dashboard, from the panel list below.

The file is generated so that no one edits JSON that sits inside JSON
strings (visState, panelsJSON, searchSourceJSON) by hand. Change a panel
here, run the script, and commit both files; the test
tests/integration/test_kibana_dashboard.py fails when they differ.

The objects follow the export format of Kibana 8.x (one saved object per
line, references by name, JSON-encoded attribute strings). Their
coreMigrationVersion is 8.8.0, so Kibana 8.8 or later can import them. No
real Kibana was used to write or check them: the tests use the import test
double tests/tools/kibana_double.py.

Usage: scripts/make_kibana_dashboard.py [--output FILE]
"""

import argparse
import json
import pathlib
import sys

SOURCE_DIR = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = SOURCE_DIR / "data" / "kibana" / "webtrap-dashboard.ndjson"

DATA_VIEW_ID = "webtrap-data-view"
# The data stream the Elasticsearch output writes by default is
# logs-webtrap-default. setup-elasticsearch rewrites this title to the
# configured data stream or index pattern before it imports the file.
DATA_VIEW_TITLE = "logs-webtrap-*"
CORE_MIGRATION_VERSION = "8.8.0"
# The newest migration of each type this file was written for. Kibana
# migrates an object with an older version on import and rejects a newer one.
# NOTE: these versions and the visState and map layer shapes follow the
# Kibana 8 documentation and exports; no running Kibana has checked them.
TYPE_MIGRATION_VERSION = {
    "index-pattern": "8.0.0",
    "visualization": "8.5.0",
    "search": "8.0.0",
    "map": "8.4.0",
    "dashboard": "8.7.0",
}
SEARCH_SOURCE_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


def compact(value):
    """JSON text as Kibana stores it inside a string attribute."""
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def search_source(query="", with_index=True):
    source = {"query": {"query": query, "language": "kuery"}, "filter": []}
    if with_index:
        source["indexRefName"] = SEARCH_SOURCE_REF
    return {"searchSourceJSON": compact(source)}


def data_view_reference():
    return [{"name": SEARCH_SOURCE_REF, "type": "index-pattern", "id": DATA_VIEW_ID}]


def saved_object(object_type, object_id, attributes, references):
    return {
        "type": object_type,
        "id": object_id,
        "attributes": attributes,
        "references": references,
        "managed": False,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSION[object_type],
    }


# Aggregations of the aggregation-based editor. Each returns one entry of
# visState.aggs; ids are assigned by visualization().

def count():
    return {"type": "count", "schema": "metric", "params": {}}


def unique_count(field, label):
    return {"type": "cardinality", "schema": "metric", "params": {"field": field, "customLabel": label}}


def latest(field, label):
    return {"type": "max", "schema": "metric", "params": {"field": field, "customLabel": label}}


def terms(field, size, schema="bucket", label=None, missing=True):
    params = {
        "field": field,
        "size": size,
        "order": "desc",
        "orderBy": "1",  # the count metric, which is always the first aggregation
        "otherBucket": False,
        "missingBucket": missing,
        "missingBucketLabel": "(none)",
    }
    if label:
        params["customLabel"] = label
    return {"type": "terms", "schema": schema, "params": params}


def over_time():
    return {"type": "date_histogram", "schema": "segment",
            "params": {"field": "@timestamp", "interval": "auto", "min_doc_count": 1,
                       "extended_bounds": {}, "customLabel": "time"}}


def table_params(rows):
    return {"perPage": rows, "showPartialRows": False, "showMetricsAtAllLevels": False,
            "showTotal": False, "totalFunc": "sum", "percentageCol": "", "autoFitRowToContent": False}


def pie_params():
    return {"type": "pie", "addTooltip": True, "isDonut": True, "distinctColors": True,
            "legendDisplay": "show", "legendPosition": "right", "nestedLegend": False,
            "labels": {"show": True, "values": True, "last_level": True, "truncate": 100}}


def xy_params(chart_type, mode):
    """Parameters of the histogram (bars) and line charts, split by a terms group."""
    return {
        "type": chart_type,
        "addLegend": True,
        "addTooltip": True,
        "legendPosition": "right",
        "times": [],
        "addTimeMarker": False,
        "grid": {"categoryLines": False},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom",
                          "show": True, "scale": {"type": "linear"},
                          "labels": {"show": True, "filter": True, "truncate": 100}, "title": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left",
                       "show": True, "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                       "title": {"text": "events"}}],
        "seriesParams": [{"show": True, "type": "histogram" if chart_type == "histogram" else "line",
                          "mode": mode, "data": {"label": "events", "id": "1"},
                          "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True,
                          "lineWidth": 2, "showCircles": True}],
    }


def visualization(object_id, title, description, vis_type, aggs, params):
    numbered = [{"id": str(number), "enabled": True, **agg} for number, agg in enumerate(aggs, 1)]
    vis_state = {"title": title, "type": vis_type, "aggs": numbered, "params": params}
    attributes = {
        "title": title,
        "description": description,
        "visState": compact(vis_state),
        "uiStateJSON": "{}",
        "version": 1,
        "kibanaSavedObjectMeta": search_source(),
    }
    return saved_object("visualization", object_id, attributes, data_view_reference())


def data_view():
    attributes = {
        "title": DATA_VIEW_TITLE,
        "name": "webtrap events",
        "timeFieldName": "@timestamp",
        "sourceFilters": "[]",
        "fieldFormatMap": "{}",
        "fieldAttrs": "{}",
        "runtimeFieldMap": "{}",
        "fields": "[]",
        "allowNoIndex": False,
    }
    return saved_object("index-pattern", DATA_VIEW_ID, attributes, [])


def source_map():
    """Build the Maps app map: a base map and source.geo.location in grid clusters."""
    layer_reference = "layer_1_source_index_pattern"
    layers = [
        {"id": "basemap", "label": None, "type": "EMS_VECTOR_TILE", "visible": True, "alpha": 1,
         "minZoom": 0, "maxZoom": 24, "sourceDescriptor": {"type": "EMS_TMS", "isAutoSelect": True},
         "style": {"type": "EMS_VECTOR_TILE"}},
        {"id": "webtrap-sources", "label": "Attack sources", "type": "GEOJSON_VECTOR",
         "visible": True, "alpha": 0.75, "minZoom": 0, "maxZoom": 24,
         "sourceDescriptor": {"type": "ES_GEO_GRID", "id": "webtrap-sources-grid",
                              "geoField": "source.geo.location", "requestType": "point",
                              "resolution": "COARSE", "metrics": [{"type": "count"}],
                              "applyGlobalQuery": True, "applyGlobalTime": True,
                              "indexPatternRefName": layer_reference},
         "style": {"type": "VECTOR", "isTimeAware": True, "properties": {
             "fillColor": {"type": "DYNAMIC", "options": {
                 "field": {"name": "doc_count", "origin": "source"}, "color": "Reds",
                 "type": "ORDINAL", "fieldMetaOptions": {"isEnabled": True, "sigma": 3}}},
             "iconSize": {"type": "DYNAMIC", "options": {
                 "field": {"name": "doc_count", "origin": "source"}, "minSize": 4, "maxSize": 24,
                 "fieldMetaOptions": {"isEnabled": True, "sigma": 3}}},
             "lineColor": {"type": "STATIC", "options": {"color": "#FFFFFF"}},
             "lineWidth": {"type": "STATIC", "options": {"size": 1}}}}},
    ]
    map_state = {"zoom": 1.4, "center": {"lon": 0, "lat": 20},
                 "timeFilters": {"from": "now-24h", "to": "now"},
                 "refreshConfig": {"isPaused": True, "interval": 0},
                 "query": {"query": "", "language": "kuery"}, "filters": [], "settings": {}}
    attributes = {
        "title": "webtrap: attack sources on a map",
        "description": "Events by source.geo.location (GeoIP city data). Sources without a "
                       "location are not drawn. The base map comes from Elastic Maps Service.",
        "mapStateJSON": compact(map_state),
        "layerListJSON": compact(layers),
        "uiStateJSON": compact({"isLayerTOCOpen": True, "openTOCDetails": []}),
    }
    references = [{"name": layer_reference, "type": "index-pattern", "id": DATA_VIEW_ID}]
    return saved_object("map", "webtrap-map-sources", attributes, references)


def latest_events():
    attributes = {
        "title": "webtrap: latest events",
        "description": "The newest events first, with the fields an analyst reads first.",
        "columns": ["source.ip", "source.geo.country_iso_code", "http.request.method", "url.original",
                    "http.response.status_code", "threat.technique.id", "rule.category",
                    "webtrap.bait_hits", "observer.name"],
        "sort": [["@timestamp", "desc"]],
        "grid": {},
        "hideChart": False,
        "isTextBasedQuery": False,
        "kibanaSavedObjectMeta": search_source(),
    }
    return saved_object("search", "webtrap-latest-events", attributes, data_view_reference())


VISUALIZATIONS = [
    visualization(
        "webtrap-attacks-over-time", "webtrap: events over time",
        "Events per time bucket, alerts (a rule matched) apart from other events.",
        "histogram", [count(), over_time(), terms("event.kind", 2, schema="group", label="kind")],
        xy_params("histogram", "stacked")),
    visualization(
        "webtrap-top-sources", "webtrap: top sources",
        "The 20 source addresses with most events, with their GeoIP country and autonomous system.",
        "table",
        [count(), terms("source.ip", 20, label="source"),
         terms("source.geo.country_iso_code", 1, label="country"),
         terms("source.as.number", 1, label="AS"),
         terms("source.as.organization.name", 1, label="AS organization")],
        table_params(20)),
    visualization(
        "webtrap-oat-breakdown", "webtrap: OWASP automated threats",
        "Events by OWASP Automated Threat id (threat.technique.id, framework OWASP OAT).",
        "pie", [count(), terms("threat.technique.id", 21, label="OAT id", missing=False)],
        pie_params()),
    visualization(
        "webtrap-crs-categories", "webtrap: rule categories",
        "Events by rule category (CRS rule file or webtrap rule group, from rule.category).",
        "pie", [count(), terms("rule.category", 20, label="category", missing=False)],
        pie_params()),
    visualization(
        "webtrap-bait-hits", "webtrap: bait hits",
        "Requests that touched a bait (webtrap.bait_hits), with the number of distinct sources.",
        "table",
        [count(), terms("webtrap.bait_hits", 20, label="bait", missing=False),
         unique_count("source.ip", "distinct sources")],
        table_params(20)),
    visualization(
        "webtrap-top-paths", "webtrap: top paths",
        "The most requested URL paths (url.path, not decoded).",
        "table",
        [count(), terms("url.path", 25, label="path"), unique_count("source.ip", "distinct sources")],
        table_params(25)),
    visualization(
        "webtrap-top-user-agents", "webtrap: top user agents",
        "The most frequent User-Agent headers (user_agent.original).",
        "table",
        [count(), terms("user_agent.original", 25, label="user agent"),
         unique_count("source.ip", "distinct sources")],
        table_params(25)),
    visualization(
        "webtrap-sensor-activity", "webtrap: sensors",
        "Per sensor (observer.name): events, the time of its newest event, and distinct sources.",
        "table",
        [count(), terms("observer.name", 50, label="sensor"),
         terms("observer.type", 1, label="type"),
         latest("@timestamp", "newest event"), unique_count("source.ip", "distinct sources")],
        table_params(50)),
    visualization(
        "webtrap-sensor-timeline", "webtrap: events per sensor over time",
        "Events per time bucket for each sensor (observer.name); a line that stops marks a "
        "sensor that went quiet.",
        "line", [count(), over_time(), terms("observer.name", 10, schema="group", label="sensor")],
        xy_params("line", "normal")),
]

# (object type, object id, x, y, width, height) on Kibana's 48-column grid.
LAYOUT = [
    ("visualization", "webtrap-attacks-over-time", 0, 0, 48, 12),
    ("visualization", "webtrap-top-sources", 0, 12, 24, 16),
    ("map", "webtrap-map-sources", 24, 12, 24, 16),
    ("visualization", "webtrap-oat-breakdown", 0, 28, 16, 14),
    ("visualization", "webtrap-crs-categories", 16, 28, 16, 14),
    ("visualization", "webtrap-bait-hits", 32, 28, 16, 14),
    ("visualization", "webtrap-top-paths", 0, 42, 24, 15),
    ("visualization", "webtrap-top-user-agents", 24, 42, 24, 15),
    ("visualization", "webtrap-sensor-activity", 0, 57, 24, 14),
    ("visualization", "webtrap-sensor-timeline", 24, 57, 24, 14),
    ("search", "webtrap-latest-events", 0, 71, 48, 18),
]


def dashboard():
    panels = []
    references = []
    for number, (object_type, object_id, x, y, width, height) in enumerate(LAYOUT, 1):
        panel_index = str(number)
        reference_name = f"panel_{panel_index}"
        panels.append({
            "version": CORE_MIGRATION_VERSION,
            "type": object_type,
            "gridData": {"x": x, "y": y, "w": width, "h": height, "i": panel_index},
            "panelIndex": panel_index,
            "embeddableConfig": {"enhancements": {}},
            "panelRefName": reference_name,
        })
        references.append({"name": reference_name, "type": object_type, "id": object_id})
    attributes = {
        "title": "webtrap: honeypot overview",
        "description": "Events that the webtrap collector's Elasticsearch output wrote: "
                       "volume, sources, OAT and rule categories, baits, paths, user agents "
                       "and sensors.",
        "panelsJSON": compact(panels),
        "optionsJSON": compact({"useMargins": True, "syncColors": False, "syncCursor": True,
                                "syncTooltips": False, "hidePanelTitles": False}),
        "timeRestore": True,
        "timeFrom": "now-24h",
        "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60000},
        "version": 1,
        "kibanaSavedObjectMeta": search_source(with_index=False),
    }
    return saved_object("dashboard", "webtrap-overview", attributes, references)


def all_objects():
    """Return every saved object in import order, referenced objects first."""
    return [data_view(), *VISUALIZATIONS, source_map(), latest_events(), dashboard()]


def render():
    return "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in all_objects())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT,
                        help="where to write the NDJSON (default: %(default)s)")
    arguments = parser.parse_args()
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(render())
    print(f"wrote {len(all_objects())} saved objects to {arguments.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
