#!/usr/bin/env python3
"""DICOMweb benchmark, Lightbox against Orthanc's DICOMweb plugin (docs/performance.md,
"DICOMweb (vs Orthanc)"). Run through scripts/bench-dicomweb.sh, which installs Orthanc,
builds `lightbox` and generates the 500-instance series.

    .venv/bin/python scripts/bench-dicomweb.py --lightbox BIN --work DIR --series-dir DIR \
        [--studies 100000] [--load-seconds 600] [--runs 50] [--frame-passes 3] [--orthanc-breakdown 50]

Both servers run on temporary directories and free ports, get the SAME data through STOW-RS
(the same client code; Lightbox's requests are SigV4-signed, Orthanc's are not), and are
measured by the same client code with a keep-alive `requests` session:

- the series of --series-dir (one frame per instance), stored in requests of 25 instances;
- --studies tiny studies (one 8x8 16-bit CT instance each, two studies per patient), stored
  alternately into both servers in requests of 100 studies until --studies are stored or
  --load-seconds (of loading time, both servers together) have passed; both always hold the same
  count, which is printed;
- QIDO `/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060` and
  `/studies?PatientID=...` (a random existing patient each run): p50 / p95 over --runs (fewer,
  at least 5, when they take over --max-seconds); Orthanc gets includefield twice instead of a
  comma list, which its plugin 1.7 ignores;
- the series' metadata (`.../series/{s}/metadata`): p50 over --runs (at most 20);
- WADO-RS frames, every instance's frame 1, by 1 client and by 4 concurrent clients (each its own
  session, the frames split between them), with `transfer-syntax=*` and with Explicit VR Little
  Endian: frames/s, the best of --frame-passes passes after one warm-up pass;
- then (after the frames, so that none of the rows above sees different conditions) instance-level
  QIDO, timed exactly as the study QIDO rows (p50 / p95 over --runs, the same cap), no
  includefield:
  - `/studies/{s}/series/{se}/instances` of the series: all its instances;
  - `/instances?SOPInstanceUID=U`, U a random instance of the series each run: a lookup among
    every instance of the server (the series' plus one per tiny study);
  - `/instances?PatientID=BENCH-CT&limit=100`, the series' patient: a data-store-level relational
    query, 100 of the series' instances.
  Each is checked once before its timing, and every timed answer again after its timer stopped;
  a wrong answer stops the benchmark (SystemExit): the series' query must return exactly the
  series' SOPInstanceUIDs, the SOPInstanceUID lookup exactly U, the PatientID query 100
  distinct instances of the series; for Lightbox, whose documented order is InstanceNumber
  then SOPInstanceUID, the first 100 in that order (Orthanc documents no order: any 100 of the
  series; whether they are the first 100 by InstanceNumber is printed).

Diagnostic, after all of the above (it changes none of the table's rows; --orthanc-breakdown 0
skips it): where Orthanc's time per WADO-RS frame goes. For --orthanc-breakdown instances of the
series, one request after the other on one session, interleaved, p50 ms of:
- the DICOMweb frame request of the table (Explicit VR LE);
- `POST /tools/lookup` with the SOPInstanceUID: the identifier lookup the plugin's LocateInstance
  does (OrthancPluginLookupInstance, one level), done by this route once per level (patient, study,
  series, instance);
- `GET /instances/{id}/study` and `GET /instances/{id}/series`: the two other requests of
  LocateInstance (plugin 1.7);
- `GET /instances/{id}/file`: the read of the whole file that RetrieveFrames then does;
- `GET /instances/{id}/frames/0/raw`: Orthanc's native REST frame, by Orthanc ID (no lookup).
Printed as one "Orthanc breakdown" line before the table, and kept in results.json.
"""

import argparse
import concurrent.futures
import io
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import pydicom
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

# The Python suites' signer (tests/python/sigv4.py): the same requests the tests make.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "python"))
from sigv4 import SigV4  # noqa: E402

ELE = "1.2.840.10008.1.2.1"
ACCEPT_ANY = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
ACCEPT_ELE = f'multipart/related; type="application/octet-stream"; transfer-syntax={ELE}'
QIDO_LIST = "/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060"
# Orthanc's plugin 1.7 ignores a comma-separated includefield (silently: no StudyDescription, no
# Modality); it gets the same request with the attributes as two includefield parameters.
QIDO_LIST_REPEATED = "/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030&includefield=00080060"
STUDY_BATCH = 100
SERIES_BATCH = 25


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, auth=None, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = requests.get(url, auth=auth, timeout=5)
            if r.status_code < 500:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} not ready after {timeout}s")
        time.sleep(0.2)


# --- servers ------------------------------------------------------------------------------------


class Server:
    name = ""
    base = ""
    proc = None
    qido_list = QIDO_LIST
    includefield = "&includefield=00081030%2C00080060"

    def session(self):
        raise NotImplementedError

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Lightbox(Server):
    name = "Lightbox"

    def __init__(self, binary, work):
        self.port = free_port()
        data = work / "lightbox-data"
        data.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
        env["LIGHTBOX_TRANSITION_DELAY_MS"] = "100"
        self.log = open(work / "lightbox.log", "wb")
        self.proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(data)],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        url = f"http://127.0.0.1:{self.port}"
        wait_http(url + "/datastore", auth=SigV4())
        import boto3
        from botocore.config import Config
        mi = boto3.client("medical-imaging", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test", config=Config(inject_host_prefix=False))
        ds = mi.create_datastore(datastoreName="bench-dicomweb")["datastoreId"]
        for _ in range(200):
            if mi.get_datastore(datastoreId=ds)["datastoreProperties"]["datastoreStatus"] == "ACTIVE":
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"data store {ds} not ACTIVE")
        self.base = f"{url}/datastore/{ds}"

    def session(self):
        s = requests.Session()
        s.auth = SigV4()
        return s


class Orthanc(Server):
    name = "Orthanc"
    qido_list = QIDO_LIST_REPEATED
    includefield = "&includefield=00081030&includefield=00080060"

    def __init__(self, work):
        self.port = free_port()
        root = work / "orthanc"
        (root / "storage").mkdir(parents=True)
        (root / "index").mkdir()
        plugins = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
        config = {
            "Name": "bench",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "HttpPort": self.port,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            # Orthanc gzips responses by default when the client accepts it (requests does): about
            # 50 ms of CPU per 512 KiB frame. Lightbox never compresses; on loopback that is only cost.
            "HttpCompressionEnabled": False,
            "Plugins": [plugins],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }
        (root / "orthanc.json").write_text(json.dumps(config, indent=2))
        self.log = open(work / "orthanc.log", "wb")
        self.proc = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/system")
        self.base = self.url + "/dicom-web"

    def session(self):
        return requests.Session()


# --- data ---------------------------------------------------------------------------------------

PH_STUDY = "1.2.826.0.1.3680043.8.498.71.99999999"
PH_SERIES = "1.2.826.0.1.3680043.8.498.72.99999999"
PH_SOP = "1.2.826.0.1.3680043.8.498.73.99999999"
PH_PID = "PID9999999"
PH_DATE = "29990101"
PH_DESC = "STUDY-DESC-99999999"


def tiny_template():
    """An 8x8 16-bit CT instance with fixed-width placeholder values, as P10 bytes."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = PH_SOP
    ds.StudyInstanceUID = PH_STUDY
    ds.SeriesInstanceUID = PH_SERIES
    ds.PatientID = PH_PID
    ds.PatientName = "BENCH^" + PH_PID
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = PH_DATE
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC" + PH_PID
    ds.StudyDescription = PH_DESC
    ds.ReferringPhysicianName = ""
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = bytes(range(128))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = PH_SOP
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def tiny_study(template, i):
    """Study i: fixed-width replacements of the template's placeholders (lengths unchanged)."""
    date = (f"{2000 + i % 25:04d}{1 + i % 12:02d}{1 + i % 28:02d}").encode()
    b = template
    for ph, v in ((PH_STUDY, PH_STUDY[:-8] + f"{i:08d}"), (PH_SERIES, PH_SERIES[:-8] + f"{i:08d}"),
                  (PH_SOP, PH_SOP[:-8] + f"{i:08d}"), (PH_PID, f"PID{i // 2:07d}"),
                  (PH_DESC, PH_DESC[:-8] + f"{i:08d}")):
        b = b.replace(ph.encode(), v.encode())
    return b.replace(PH_DATE.encode(), date)


def multipart(parts, boundary="benchdicomwebboundary"):
    out = bytearray()
    for data in parts:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        out += data
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f'multipart/related; type="application/dicom"; boundary={boundary}'


def stow(server, session, parts):
    body, ct = multipart(parts)
    r = session.post(server.base + "/studies", data=body,
                     headers={"Content-Type": ct, "Accept": "application/dicom+json"}, timeout=600)
    if r.status_code != 200:
        raise SystemExit(f"{server.name} STOW-RS: {r.status_code} {r.text[:500]}")


# --- measurements -------------------------------------------------------------------------------


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def timed_get(session, url, accept):
    t = time.perf_counter()
    r = session.get(url, headers={"Accept": accept})
    body = r.content
    dt = time.perf_counter() - t
    if r.status_code != 200:
        raise SystemExit(f"GET {url}: {r.status_code} {body[:300]!r}")
    return dt, r, body


def first_part(body, content_type):
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    start = body.index(b"\r\n\r\n") + 4
    end = body.index(f"\r\n--{boundary}".encode(), start)
    return body[start:end]


def qido_times(ss, urls, res, key, max_seconds, check=None):
    """One warm-up, then the urls in order (--runs of them, or fewer, at least 5, when they take
    over max_seconds): p50 / p95 ms into res[key], the count into res[key + "_runs"]. check(url,
    response), if given, is called after each timed request's timer stopped."""
    timed_get(ss, urls[0], "application/dicom+json")  # warm-up
    xs, t_end = [], time.monotonic() + max_seconds
    for u in urls:  # --runs, or fewer (at least 5) when they take over --max-seconds
        dt, r, _ = timed_get(ss, u, "application/dicom+json")
        xs.append(dt)
        if check is not None:
            check(u, r)
        if len(xs) >= 5 and time.monotonic() > t_end:
            break
    res[key + "_runs"] = len(xs)
    res[key] = (pct(xs, 50) * 1000, pct(xs, 95) * 1000)
    print(f"  {key}: p50 {res[key][0]:.1f} ms, p95 {res[key][1]:.1f} ms over {len(xs)} runs", flush=True)


def sop_uids(server, url, r):
    """The SOPInstanceUIDs of a QIDO instance answer, in order (SystemExit when one lacks it)."""
    try:
        items = r.json()
        return [x["00080018"]["Value"][0] for x in items]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise SystemExit(f"{server.name} {url}: not a QIDO instance answer ({e!r}): {r.text[:300]}")


def frames_per_second(server, urls, accept, clients):
    chunks = [urls[k::clients] for k in range(clients)]
    sessions = [server.session() for _ in range(clients)]

    def run(k):
        n = 0
        for u in chunks[k]:
            r = sessions[k].get(u, headers={"Accept": accept})
            if r.status_code != 200:
                raise SystemExit(f"{server.name} frame {u}: {r.status_code} {r.text[:300]}")
            n += len(r.content)
        return n

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        t = time.perf_counter()
        total = sum(pool.map(run, range(clients)))
        dt = time.perf_counter() - t
    return len(urls) / dt, total


def orthanc_breakdown(server, study, series, sops, n):
    """p50 ms of the requests behind one Orthanc WADO-RS frame (see the docstring), interleaved."""
    ss = server.session()
    picked = sops[::max(1, len(sops) // n)][:n]
    ids = {}
    for u in picked:
        r = ss.post(server.url + "/tools/lookup", data=u)
        hits = [x["ID"] for x in r.json() if x["Type"] == "Instance"]
        if r.status_code != 200 or len(hits) != 1:
            raise SystemExit(f"Orthanc /tools/lookup {u}: {r.status_code} {r.text[:300]}")
        ids[u] = hits[0]
    times = {k: [] for k in ("dicomweb_frame", "tools_lookup", "instance_study", "instance_series",
                             "instance_file", "native_raw_frame")}

    def timed(key, method, url, **kw):
        t = time.perf_counter()
        r = ss.request(method, url, **kw)
        _ = r.content
        times[key].append(time.perf_counter() - t)
        if r.status_code != 200:
            raise SystemExit(f"Orthanc {method} {url}: {r.status_code} {r.text[:300]}")

    for u in picked:
        oid = ids[u]
        timed("dicomweb_frame", "GET", f"{server.base}/studies/{study}/series/{series}/instances/{u}/frames/1",
              headers={"Accept": ACCEPT_ELE})
        timed("tools_lookup", "POST", server.url + "/tools/lookup", data=u)
        timed("instance_study", "GET", f"{server.url}/instances/{oid}/study")
        timed("instance_series", "GET", f"{server.url}/instances/{oid}/series")
        timed("instance_file", "GET", f"{server.url}/instances/{oid}/file")
        timed("native_raw_frame", "GET", f"{server.url}/instances/{oid}/frames/0/raw")
    return {k: pct(v, 50) * 1000 for k, v in times.items()}, len(picked)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lightbox", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--series-dir", required=True)
    ap.add_argument("--studies", type=int, default=100000)
    ap.add_argument("--load-seconds", type=float, default=600)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--frame-passes", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=60, help="time cap of one QIDO measurement's runs")
    ap.add_argument("--orthanc-breakdown", type=int, default=50,
                    help="instances for the Orthanc per-frame diagnostic at the end (0: skip it)")
    a = ap.parse_args()
    work = pathlib.Path(a.work)

    files = sorted(pathlib.Path(a.series_dir).rglob("*.dcm"))
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    study, series = str(heads[0].StudyInstanceUID), str(heads[0].SeriesInstanceUID)
    sops = [str(h.SOPInstanceUID) for h in heads]
    patient = str(heads[0].PatientID)
    # Lightbox's documented order of a series' instances: InstanceNumber (missing last), then UID.
    by_number = [str(h.SOPInstanceUID) for h in sorted(
        heads, key=lambda h: (h.get("InstanceNumber") is None, int(h.get("InstanceNumber") or 0), str(h.SOPInstanceUID)))]
    pid_limit = min(100, len(sops))
    if len(set(sops)) != len(sops) or any(str(h.PatientID) != patient for h in heads):
        raise SystemExit(f"{a.series_dir}: SOPInstanceUIDs not distinct or more than one PatientID")
    first_pixels = pydicom.dcmread(files[0]).PixelData
    print(f"series: {len(files)} instances, {heads[0].Rows}x{heads[0].Columns}, {heads[0].BitsStored}-bit, "
          f"{heads[0].file_meta.TransferSyntaxUID.name}, {sum(f.stat().st_size for f in files) / 1e6:.0f} MB")

    servers = []
    try:
        servers.append(Lightbox(a.lightbox, work))
        servers.append(Orthanc(work))
        sess = {s.name: s.session() for s in servers}

        # The 500-instance series.
        for s in servers:
            t = time.perf_counter()
            for k in range(0, len(files), SERIES_BATCH):
                stow(s, sess[s.name], [f.read_bytes() for f in files[k:k + SERIES_BATCH]])
            print(f"{s.name}: stored the series in {time.perf_counter() - t:.1f} s", flush=True)

        # The tiny studies, alternately into both servers.
        template = tiny_template()
        load_time = {s.name: 0.0 for s in servers}
        stored = 0
        t_report = time.monotonic()
        while stored < a.studies and sum(load_time.values()) < a.load_seconds:
            n = min(STUDY_BATCH, a.studies - stored)
            parts = [tiny_study(template, stored + j) for j in range(n)]
            for s in servers:
                t = time.perf_counter()
                stow(s, sess[s.name], parts)
                load_time[s.name] += time.perf_counter() - t
            stored += n
            if time.monotonic() - t_report > 30:
                t_report = time.monotonic()
                print(f"  {stored} studies: " + ", ".join(f"{k} {stored / v:.0f}/s" for k, v in load_time.items()),
                      flush=True)
        total_studies = stored + 1
        print(f"studies: {stored} tiny + the series' study = {total_studies} in each server; loading: "
              + ", ".join(f"{k} {v:.0f} s ({stored / v:.0f} studies/s)" for k, v in load_time.items()), flush=True)
        patients = max(1, (stored + 1) // 2)

        results = {}
        for s in servers:
            ss = s.session()
            res = results[s.name] = {}
            # check: both return 101 studies, the series' metadata has every instance and frame 1 is the pixels.
            _, r, body = timed_get(ss, s.base + s.qido_list, "application/dicom+json")
            got = len(r.json())
            attrs = sorted(r.json()[0].keys())
            _, r, body = timed_get(ss, f"{s.base}/studies?PatientID=PID0000001", "application/dicom+json")
            pgot = len(r.json())
            _, r, body = timed_get(ss, f"{s.base}/studies/{study}/series/{series}/metadata", "application/dicom+json")
            mgot = len(r.json())
            fu = f"{s.base}/studies/{study}/series/{series}/instances/{sops[0]}/frames/1"
            _, r, body = timed_get(ss, fu, ACCEPT_ELE)
            ele_ok = first_part(body, r.headers["Content-Type"]) == first_pixels
            _, r, body = timed_get(ss, fu, ACCEPT_ANY)
            any_ct = r.headers["Content-Type"]
            any_len = len(first_part(body, any_ct))
            print(f"{s.name}: QIDO list attributes {' '.join(attrs)}")
            print(f"{s.name}: QIDO list {got} studies, PatientID search {pgot}, metadata {mgot} instances, "
                  f"ELE frame == pixels: {ele_ok}, transfer-syntax=* frame: {any_len} bytes ({any_ct})", flush=True)
            res["check"] = {"qido": got, "pid": pgot, "metadata": mgot, "ele_ok": ele_ok, "any_bytes": any_len,
                            "any_content_type": any_ct}

            rng = random.Random(1)
            for key, urls in (("qido_list", [s.base + s.qido_list] * a.runs),
                              ("qido_pid", [f"{s.base}/studies?PatientID=PID{rng.randrange(patients):07d}"
                                            + s.includefield for _ in range(a.runs)])):
                qido_times(ss, urls, res, key, a.max_seconds)
            mu = f"{s.base}/studies/{study}/series/{series}/metadata"
            timed_get(ss, mu, "application/dicom+json")
            xs = [timed_get(ss, mu, "application/dicom+json")[0] for _ in range(min(a.runs, 20))]
            res["metadata"] = (pct(xs, 50) * 1000, pct(xs, 95) * 1000)
            print(f"  metadata: p50 {res['metadata'][0]:.1f} ms, p95 {res['metadata'][1]:.1f} ms", flush=True)

            furls = [f"{s.base}/studies/{study}/series/{series}/instances/{u}/frames/1" for u in sops]
            for label, accept in (("any", ACCEPT_ANY), ("ele", ACCEPT_ELE)):
                for clients in (1, 4):
                    frames_per_second(s, furls, accept, clients)  # warm-up pass
                    best = max(frames_per_second(s, furls, accept, clients) for _ in range(a.frame_passes))
                    res[f"fps_{label}_{clients}"] = best
                    print(f"  frames {label} x{clients}: {best[0]:.0f} frames/s ({best[1] / 1e6:.0f} MB per pass)",
                          flush=True)

            # Instance-level QIDO (see the docstring): check, then time like the study QIDO rows.
            def check_all(u, r, s=s):
                got = sop_uids(s, u, r)
                if len(got) != len(sops) or set(got) != set(sops):
                    raise SystemExit(f"{s.name} {u}: {len(got)} instances ({len(set(got) & set(sops))} of the "
                                     f"series'), expected the series' {len(sops)}")
                return got

            def check_sop(u, r, s=s):
                want = urllib.parse.parse_qs(urllib.parse.urlsplit(u).query)["SOPInstanceUID"][0]
                got = sop_uids(s, u, r)
                if got != [want]:
                    raise SystemExit(f"{s.name} {u}: {got[:5]} ({len(got)} instances), expected [{want}]")
                return got

            def check_pid(u, r, s=s):
                got = sop_uids(s, u, r)
                if len(got) != pid_limit or len(set(got)) != pid_limit or not set(got) <= set(sops):
                    raise SystemExit(f"{s.name} {u}: {len(got)} instances ({len(set(got))} distinct, "
                                     f"{len(set(got) & set(sops))} of the series'), expected {pid_limit} of the series")
                if s.name == "Lightbox" and got != by_number[:pid_limit]:
                    raise SystemExit(f"{s.name} {u}: not the first {pid_limit} instances by InstanceNumber, "
                                     f"SOPInstanceUID (its documented order)")
                return got

            iu = f"{s.base}/studies/{study}/series/{series}/instances"
            su = f"{s.base}/instances?SOPInstanceUID={sops[len(sops) // 2]}"
            pu = f"{s.base}/instances?PatientID={patient}&limit={pid_limit}"
            chk = {}
            for name, u, fn in (("series_instances", iu, check_all), ("sop", su, check_sop),
                                ("instances_pid", pu, check_pid)):
                _, r, body = timed_get(ss, u, "application/dicom+json")
                got = fn(u, r)
                attrs = sorted(set().union(*(x.keys() for x in r.json())))
                chk[name] = {"instances": len(got), "bytes": len(body), "attributes": attrs}
                if name == "series_instances":
                    chk[name]["instance_number_order"] = got == by_number
                if name == "instances_pid":
                    chk[name]["first_by_instance_number"] = got == by_number[:pid_limit]
                    chk[name]["first_by_instance_number_as_set"] = set(got) == set(by_number[:pid_limit])
                print(f"{s.name}: QIDO {name}: {len(got)} instances OK, {len(body)} bytes, attributes {' '.join(attrs)}"
                      + "".join(f", {k} {v}" for k, v in chk[name].items() if isinstance(v, bool)), flush=True)
            res["check"].update({"qido_" + k: v for k, v in chk.items()})
            rng_i = random.Random(2)
            for key, urls, fn in (("qido_series_instances", [iu] * a.runs, check_all),
                                  ("qido_sop", [f"{s.base}/instances?SOPInstanceUID={rng_i.choice(sops)}"
                                                for _ in range(a.runs)], check_sop),
                                  ("qido_instances_pid", [pu] * a.runs, check_pid)):
                qido_times(ss, urls, res, key, a.max_seconds, fn)

        # Diagnostic, after every measurement of the table (see the docstring).
        if a.orthanc_breakdown > 0:
            oc_server = next(s for s in servers if s.name == "Orthanc")
            bd, n = orthanc_breakdown(oc_server, study, series, sops, a.orthanc_breakdown)
            results["Orthanc"]["breakdown"] = bd
            print(f"Orthanc breakdown at {total_studies} studies, p50 ms over {n} instances, one request at a time: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in bd.items()), flush=True)
    finally:
        for s in servers:
            s.stop()

    lb, oc = results["Lightbox"], results["Orthanc"]
    print()
    print(f"| measurement ({total_studies} studies; series of {len(files)} instances) | Lightbox / Orthanc | "
          "Lightbox | Orthanc |")
    print("|---|---|---|---|")
    for key, label in (("qido_list", "QIDO `/studies?limit=101…`"), ("qido_pid", "QIDO `/studies?PatientID=…`"),
                       ("qido_series_instances", f"QIDO `/studies/{{s}}/series/{{se}}/instances` ({len(sops)})"),
                       ("qido_sop", "QIDO `/instances?SOPInstanceUID=…`"),
                       ("qido_instances_pid", f"QIDO `/instances?PatientID=…&limit={pid_limit}`")):
        for i, p in ((0, "p50"), (1, "p95")):
            print(f"| {label}, {p} ms | {lb[key][i] / oc[key][i]:.3g}× the time | {lb[key][i]:.1f} | {oc[key][i]:.1f} |")
    print(f"| series metadata, p50 ms | {lb['metadata'][0] / oc['metadata'][0]:.3g}× the time | "
          f"{lb['metadata'][0]:.1f} | {oc['metadata'][0]:.1f} |")
    for label, name in (("any", "`transfer-syntax=*`"), ("ele", "Explicit VR LE")):
        for clients in (1, 4):
            x, y = lb[f"fps_{label}_{clients}"][0], oc[f"fps_{label}_{clients}"][0]
            print(f"| frames/s, {name}, {clients} client{'s' if clients > 1 else ''} | {x / y:.3g}× the rate | "
                  f"{x:.0f} | {y:.0f} |")
    (work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
