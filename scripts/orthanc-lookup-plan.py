#!/usr/bin/env python3
"""Why Orthanc's DICOMweb frames slow down as its index grows (docs/performance.md, "DICOMweb (vs
Orthanc)"): times the SQL Orthanc 1.10 runs to resolve a SOPInstanceUID (LookupIdentifierExact,
`CREATE TEMPORARY TABLE Lookup AS SELECT …`) on Orthanc's own index schema, filled with synthetic
rows shaped like the benchmark's data (two one-instance studies per patient, plus one
500-instance series), at 1,000 and 100,000 studies; once as Orthanc plans it (SQLite without
statistics) and once forced onto the index on the identifier value. Prints each plan and p50.

The schema comes from a real Orthanc: the script starts the installed `Orthanc` binary on an
empty temporary index (needs the Debian `orthanc` package, as scripts/bench-dicomweb.sh
installs), stops it, and copies the index file it created.

Usage: .venv/bin/python scripts/orthanc-lookup-plan.py"""

import json
import pathlib
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import urllib.request

QUERY = ("SELECT instances.publicId, instances.internalId FROM Resources AS instances "
         "INNER JOIN DicomIdentifiers t0{hint} ON t0.id = instances.internalId AND t0.tagGroup = 8 "
         "AND t0.tagElement = 24 WHERE instances.resourceType = 4 AND t0.value = ?")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def orthanc_schema(work):
    """The index file of a freshly started, empty Orthanc."""
    index = work / "index"
    config = work / "orthanc.json"
    port = free_port()
    config.write_text(json.dumps({
        "Name": "schema", "StorageDirectory": str(work / "storage"), "IndexDirectory": str(index),
        "HttpPort": port, "DicomPort": free_port(), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": []}))
    proc = subprocess.Popen(["Orthanc", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/system", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("Orthanc did not start")
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(30)
    return index / "index"


def build(schema, n, path):
    """Orthanc's schema with n tiny studies and the 500-instance series; returns the series'
    SOPInstanceUIDs."""
    shutil.copy(schema, path)
    db = sqlite3.connect(path)
    resources, identifiers = [], []

    def add(level, parent, group, element, value):
        rid = len(resources) + 1
        resources.append((rid, level, f"pub-{level}-{rid}", parent))
        identifiers.append((rid, group, element, value))
        return rid

    patient = None
    for i in range(n):
        if i % 2 == 0:
            patient = add(1, None, 0x10, 0x20, f"PID{i // 2:07d}")
        study = add(2, patient, 0x20, 0x0D, f"1.2.826.0.1.3680043.8.498.71.{i:08d}")
        series = add(3, study, 0x20, 0x0E, f"1.2.826.0.1.3680043.8.498.72.{i:08d}")
        add(4, series, 0x08, 0x18, f"1.2.826.0.1.3680043.8.498.73.{i:08d}")
    patient = add(1, None, 0x10, 0x20, "BENCH-CT")
    study = add(2, patient, 0x20, 0x0D, "9.9.1")
    series = add(3, study, 0x20, 0x0E, "9.9.2")
    sops = [f"9.9.3.{k}" for k in range(500)]
    for sop in sops:
        add(4, series, 0x08, 0x18, sop)
    db.executemany("INSERT INTO Resources VALUES (?,?,?,?)", resources)
    db.executemany("INSERT INTO DicomIdentifiers VALUES (?,?,?,?)", identifiers)
    db.commit()
    return db, sops


def main():
    with tempfile.TemporaryDirectory(prefix="orthanc-lookup-plan.") as tmp:
        work = pathlib.Path(tmp)
        schema = orthanc_schema(work)
        print(f"SQLite {sqlite3.sqlite_version}; schema from {subprocess.run(['Orthanc', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
        for n in (1000, 100000):
            db, sops = build(schema, n, work / f"synthetic-{n}.db")
            for name, hint in (("Orthanc's query", ""),
                               ("forced value index", " INDEXED BY DicomIdentifiersIndexValues")):
                sql = QUERY.format(hint=hint)
                plan = " / ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, ("x",)))
                times = []
                for sop in sops[:100]:
                    t = time.perf_counter()
                    db.execute("DROP TABLE IF EXISTS Lookup")
                    db.execute("CREATE TEMPORARY TABLE Lookup AS " + sql, (sop,))
                    found = db.execute("SELECT publicId FROM Lookup").fetchall()
                    times.append(time.perf_counter() - t)
                    assert len(found) == 1, found
                print(f"{n} studies, {name}: p50 {statistics.median(times) * 1000:.2f} ms over "
                      f"{len(times)} lookups; plan: {plan}")
            db.close()


if __name__ == "__main__":
    main()
