#!/usr/bin/python3
# Debian's interpreter, because python3-pyshp is installed for it.
"""Check scripts/world_outline.py, which builds the dashboard map's outline.

- The Douglas-Peucker step keeps the end points and every corner farther
  than the tolerance from the line, and drops points closer than that.
- On a shapefile written by this test with pyshp: a square with a hole keeps
  both rings in one country, a collinear point is dropped, coordinates are
  rounded, and an island smaller than the tolerance is dropped.
- On the Natural Earth shapefile that the build uses, the output is under
  300 KB and has more than 150 countries. Land points lie inside a ring and
  ocean points lie in none. scripts/install-deps.sh unpacks that shapefile
  from Debian's python3-geopandas into .peers/geopandas.

Exits 77 (skipped) when python3-pyshp is missing.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile


def source_dir():
    env = os.environ.get("WEBTRAP_SOURCE_DIR")
    return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2]


SOURCE = source_dir()
SCRIPT = SOURCE / "scripts" / "world_outline.py"
NATURAL_EARTH = [
    SOURCE / ".peers" / "geopandas" / "usr" / "lib" / "python3" / "dist-packages" / "geopandas"
    / "datasets" / "naturalearth_lowres" / "naturalearth_lowres.shp",
    pathlib.Path("/usr/lib/python3/dist-packages/geopandas/datasets/naturalearth_lowres/"
                 "naturalearth_lowres.shp"),
]


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def load_converter():
    spec = importlib.util.spec_from_file_location("world_outline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ring_contains(ring, lon, lat):
    """Return whether lon, lat lies inside a flat [lon, lat, ...] ring (ray casting)."""
    inside = False
    count = len(ring) // 2
    for i in range(count):
        x1, y1 = ring[2 * i], ring[2 * i + 1]
        x2, y2 = ring[2 * ((i + 1) % count)], ring[2 * ((i + 1) % count) + 1]
        if (y1 > lat) != (y2 > lat):
            crossing = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < crossing:
                inside = not inside
    return inside


def check_simplify(converter):
    line = [(0, 0), (1, 0.01), (2, 0), (3, 1), (4, 0)]
    simplified = converter.simplify(line, 0.1)
    check(simplified[0] == (0, 0), f"first point lost: {simplified}")
    check(simplified[-1] == (4, 0), f"last point lost: {simplified}")
    check((3, 1) in simplified, f"corner 1 degree off the line was dropped: {simplified}")
    check((1, 0.01) not in simplified, f"point 0.01 degree off the line was kept: {simplified}")


def check_synthetic_shapefile(converter, folder):
    import shapefile  # python3-pyshp

    path = str(folder / "synthetic")
    with shapefile.Writer(path, shapeType=shapefile.POLYGON) as writer:
        writer.field("name", "C")
        # Outer ring clockwise, hole counter-clockwise, as the format requires.
        # (5, 10) lies on the square's top edge and adds nothing to its shape.
        writer.poly([
            [(0, 0), (0, 10), (5, 10), (10, 10), (10, 0), (0, 0)],
            [(3.04, 3.04), (6.96, 3.04), (6.96, 6.96), (3.04, 6.96), (3.04, 3.04)],
        ])
        writer.record("square with a hole")
        writer.poly([[(50, 50), (50, 50.01), (50.01, 50.01), (50.01, 50), (50, 50)]])
        writer.record("island smaller than the tolerance")
    output = folder / "synthetic.json"
    result = subprocess.run([sys.executable, str(SCRIPT), path + ".shp", str(output)],
                            capture_output=True, text=True, timeout=60)
    check(result.returncode == 0, f"world_outline.py failed: {result.stderr}")
    countries = json.loads(output.read_text())["countries"]
    check(len(countries) == 1, f"expected 1 country (the island dropped), got {len(countries)}")
    rings = countries[0]
    check(len(rings) == 2, f"expected an outer ring and a hole, got {len(rings)} rings")
    outer = list(zip(rings[0][0::2], rings[0][1::2]))
    check(sorted(outer) == [(0, 0), (0, 10), (10, 0), (10, 10)],
          f"outer ring is {outer}, expected the square's 4 corners")
    hole = list(zip(rings[1][0::2], rings[1][1::2]))
    check(sorted(hole) == [(3, 3), (3, 7), (7, 3), (7, 7)],
          f"hole is {hole}, expected corners rounded to 0.1 degree")


def check_natural_earth(folder):
    shp = next((path for path in NATURAL_EARTH if path.exists()), None)
    check(shp is not None, f"naturalearth_lowres.shp not found in {NATURAL_EARTH}; "
                           "run scripts/install-deps.sh to unpack python3-geopandas")
    output = folder / "world.json"
    result = subprocess.run([sys.executable, str(SCRIPT), str(shp), str(output)],
                            capture_output=True, text=True, timeout=120)
    check(result.returncode == 0, f"world_outline.py failed: {result.stderr}")
    size = output.stat().st_size
    check(size < 300_000, f"outline is {size} bytes, expected < 300 KB")
    countries = json.loads(output.read_text())["countries"]
    check(len(countries) > 150, f"outline has {len(countries)} countries")
    rings = [ring for country in countries for ring in country]
    for name, lon, lat in [("Brazil", -52, -10), ("Siberia", 100, 62), ("Sahara", 10, 22)]:
        check(any(ring_contains(ring, lon, lat) for ring in rings),
              f"{name} ({lon}, {lat}) is in no ring of the outline")
    for name, lon, lat in [("South Pacific", -130, -40), ("Indian Ocean", 75, -25)]:
        check(not any(ring_contains(ring, lon, lat) for ring in rings),
              f"{name} ({lon}, {lat}) lies inside a ring of the outline")
    return len(countries), size


def main():
    try:
        import shapefile  # noqa: F401
    except ImportError:
        print("python3-pyshp not installed; world_outline.py reads shapefiles with it",
              file=sys.stderr)
        return 77
    converter = load_converter()
    check_simplify(converter)
    with tempfile.TemporaryDirectory(prefix="webtrap-world-outline-") as temporary:
        folder = pathlib.Path(temporary)
        check_synthetic_shapefile(converter, folder)
        countries, size = check_natural_earth(folder)
    print(f"world outline test: simplification, synthetic shapefile and Natural Earth "
          f"({countries} countries, {size} bytes) checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
