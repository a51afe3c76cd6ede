#!/usr/bin/python3
# Debian's interpreter, because python3-pyshp is installed for it.
"""Convert Natural Earth's country polygons into the dashboard map's outline.

Reads a polygon shapefile (the build uses naturalearth_lowres from Debian's
python3-geopandas, which is Natural Earth's 1:110m Admin 0 countries) with
pyshp, simplifies every ring with the Douglas-Peucker algorithm, rounds the
coordinates and writes compact JSON:

    {"source": "...", "countries": [[[lon, lat, lon, lat, ...], ...], ...]}

Each country is a list of rings, and each ring is a flat list of alternating
longitude and latitude in degrees (WGS 84, as in the shapefile). A country's
rings are its outer boundaries and its holes together, so a canvas that
fills one country's rings with the even-odd rule draws the holes empty.

Usage: scripts/world_outline.py SHAPEFILE OUTPUT.json [--tolerance DEGREES]
"""

import argparse
import json
import math
import sys

try:
    import shapefile  # python3-pyshp
except ImportError:
    sys.exit("world_outline.py: the Python module 'shapefile' is missing; "
             "install Debian's python3-pyshp package (scripts/install-deps.sh)")

SOURCE_NOTE = ("Natural Earth 1:110m Admin 0 countries (public domain), "
               "from Debian's python3-geopandas datasets/naturalearth_lowres")


def point_segment_distance(point, start, end):
    """Return the distance from point to the segment start-end, in degrees."""
    px, py = point
    ax, ay = start
    bx, by = end
    dx = bx - ax
    dy = by - ay
    length_squared = dx * dx + dy * dy
    if length_squared == 0:
        return math.hypot(px - ax, py - ay)
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length_squared))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def simplify(points, tolerance):
    """Simplify a polyline with the Douglas-Peucker algorithm.

    Keeps the first and last point, and every point that lies farther than
    tolerance from the simplified line. Uses a stack instead of recursion,
    because a long ring would exceed Python's recursion limit.
    """
    if len(points) < 3:
        return list(points)
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        max_distance = 0.0
        max_index = first
        for index in range(first + 1, last):
            distance = point_segment_distance(points[index], points[first], points[last])
            if distance > max_distance:
                max_distance = distance
                max_index = index
        if max_distance > tolerance:
            keep[max_index] = True
            stack.append((first, max_index))
            stack.append((max_index, last))
    return [point for point, kept in zip(points, keep) if kept]


def simplify_ring(ring, tolerance):
    """Simplify a closed ring, or return None when too little of it is left.

    A closed ring starts and ends on the same point, which would give
    Douglas-Peucker a zero-length base line, so the ring is split at the
    point farthest from its start and each half is simplified alone.
    """
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring = ring[:-1]
    if len(ring) < 3:
        return None
    start = ring[0]
    far = max(range(len(ring)), key=lambda i: math.hypot(ring[i][0] - start[0],
                                                         ring[i][1] - start[1]))
    first_half = simplify(ring[:far + 1], tolerance)
    second_half = simplify(ring[far:] + [start], tolerance)
    simplified = first_half[:-1] + second_half[:-1]
    # Three distinct corners make the smallest ring that encloses an area.
    return simplified if len(simplified) >= 3 else None


def round_ring(ring, decimals):
    """Flatten a ring to [lon, lat, ...], rounded, without repeated points."""
    flat = []
    previous = None
    for lon, lat in ring:
        point = (round(lon, decimals), round(lat, decimals))
        if point == previous:
            continue
        previous = point
        for value in point:
            # 12.0 is written as 12, which saves two bytes per whole degree.
            flat.append(int(value) if value == int(value) else value)
    return flat if len(flat) >= 6 else None


def convert(reader, tolerance, decimals):
    """Return the outline document for every polygon shape in reader."""
    if reader.shapeType not in (shapefile.POLYGON, shapefile.POLYGONZ, shapefile.POLYGONM):
        raise ValueError(f"expected a polygon shapefile, got shape type {reader.shapeTypeName}")
    countries = []
    for shape in reader.iterShapes():
        if shape.shapeType == shapefile.NULL:
            continue
        bounds = list(shape.parts) + [len(shape.points)]
        rings = []
        for begin, end in zip(bounds, bounds[1:]):
            ring = simplify_ring(shape.points[begin:end], tolerance)
            if ring is None:
                continue
            flat = round_ring(ring, decimals)
            if flat is not None:
                rings.append(flat)
        if rings:
            countries.append(rings)
    return {"source": SOURCE_NOTE, "countries": countries}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapefile", help="path of the .shp file (its .shx and .dbf beside it)")
    parser.add_argument("output", help="JSON file to write")
    parser.add_argument("--tolerance", type=float, default=0.1,
                        help="Douglas-Peucker tolerance in degrees (default 0.1)")
    parser.add_argument("--decimals", type=int, default=1,
                        help="decimal places kept per coordinate (default 1, about 11 km)")
    args = parser.parse_args()

    try:
        reader = shapefile.Reader(args.shapefile)
    except shapefile.ShapefileException as error:
        sys.exit(f"world_outline.py: cannot read {args.shapefile}: {error}")
    with reader:
        try:
            document = convert(reader, args.tolerance, args.decimals)
        except ValueError as error:
            sys.exit(f"world_outline.py: {args.shapefile}: {error}")
    if not document["countries"]:
        sys.exit(f"world_outline.py: {args.shapefile} contains no polygon")
    text = json.dumps(document, separators=(",", ":"))
    with open(args.output, "w", encoding="utf-8") as output:
        output.write(text)
    rings = sum(len(country) for country in document["countries"])
    points = sum(len(ring) // 2 for country in document["countries"] for ring in country)
    print(f"world_outline.py: {len(document['countries'])} countries, {rings} rings, "
          f"{points} points, {len(text)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
