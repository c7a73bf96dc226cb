"""Image set reads (issue #6) through real clients against the real binary: GetImageSet,
GetImageSetMetadata, GetImageFrame, SearchImageSets and ListImageSetVersions with the AWS CLI and
boto3 on image sets made by real import jobs (pydicom corpus files and scripts/dicom-generate.py
studies); frames fetched with GetImageFrame are decoded by independent HTJ2K decoders
(pylibjpeg-openjpeg and OpenJPH via imagecodecs) and compared with pydicom's pixels and the
metadata document's CRC-32; versions made by re-imports; storage tiers across a restart with a
moved service clock (`--clock-offset-secs`); CORS preflight and headers with raw HTTP.
Runs on both backends (LIGHTBOX_TEST_BACKEND=embedded | postgres-s3). One server and its imports
are shared by the module; the storage-tier test has its own server (it restarts it)."""

import datetime
import gzip
import http.client
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.parse
import zlib

import boto3
import numpy as np
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import Lightbox, module_server, REPO
from test_import import ROLE, aws_json, make_datastore, read_outputs, run_aws, start_and_wait

UTC = datetime.timezone.utc
HTJ2K = "1.2.840.10008.1.2.4.202"
ARCHIVE_OFFSET = 31 * 86400

# Corpus files imported (by the AWS CLI) into the shared data store. The three SC_rgb* files are
# three SOP instances of one series (one image set) stored as HTJ2K (.202), kept JPEG baseline
# (.50) and kept JPEG 2000 (.91).
CORPUS = [
    "CT_small.dcm",  # signed 16-bit, explicit VR LE
    "MR_small_RLE.dcm",  # signed 16-bit, RLE lossless
    "image_dfl.dcm",  # unsigned 8-bit, deflated explicit VR LE
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # unsigned 8-bit, JPEG lossless
    "SC_rgb.dcm",  # RGB 8-bit, native
    "SC_rgb_jpeg_dcmtk.dcm",  # RGB series, JPEG baseline: kept as is (image/jpeg)
    "SC_rgb_gdcm_KY.dcm",  # RGB series, JPEG 2000 lossy: kept as is (image/j2c)
    "emri_small.dcm",  # 10 frames, 12-bit
]
KEPT = {"SC_rgb_jpeg_dcmtk.dcm": ("1.2.840.10008.1.2.4.50", "image/jpeg"),
        "SC_rgb_gdcm_KY.dcm": ("1.2.840.10008.1.2.4.91", "image/j2c")}
# Generated study in the shared data store: 2 studies x 2 series x 4 instances, every 2nd
# instance with another PatientID (a non-primary image set per series).
GEN_STUDIES, GEN_SERIES, GEN_INSTANCES, GEN_CONFLICT_EVERY = 2, 2, 4, 2


# --- module fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory, module_aws_env):
    server = module_server(tmp_path_factory, "reads-server")
    yield server
    server.kill()


def s3_client(server):
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(s3={"addressing_style": "path"}))


def boto3_import(server, ds, bucket, files, prefix, timeout=180):
    """Uploads {key: path} under s3://bucket/prefix/in/ and runs one import job with boto3.
    Returns ({key: importResponse}, jobSummary)."""
    s3 = s3_client(server)
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as e:
        if e.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
    for key, path in files.items():
        s3.upload_file(str(path), bucket, f"{prefix}/in/{key}")
    mi = server.client()
    job = mi.start_dicom_import_job(datastoreId=ds, dataAccessRoleArn=ROLE, inputS3Uri=f"s3://{bucket}/{prefix}/in/",
                                    outputS3Uri=f"s3://{bucket}/{prefix}/out/")
    deadline = time.monotonic() + timeout
    while True:
        props = mi.get_dicom_import_job(datastoreId=ds, jobId=job["jobId"])["jobProperties"]
        if props["jobStatus"] in ("COMPLETED", "FAILED"):
            break
        assert time.monotonic() < deadline, props["jobStatus"]
        time.sleep(0.1)
    assert props["jobStatus"] == "COMPLETED", props
    out = props["outputS3Uri"][len(f"s3://{bucket}/"):]

    def lines(name):
        body = s3.get_object(Bucket=bucket, Key=out + name)["Body"].read().decode()
        return [json.loads(l) for l in body.splitlines() if l.strip()]

    assert lines("FAILURE/failure.ndjson") == []
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=out + "job-output-manifest.json")["Body"].read())
    placed = {l["inputFile"][len(f"{prefix}/in/"):]: l["importResponse"] for l in lines("SUCCESS/success.ndjson")}
    assert set(placed) == set(files)
    return placed, manifest["jobSummary"]


def generate(out, *args):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "dicom-generate.py"), str(out), *args,
                           "--list-sop-uids"], check=True, capture_output=True, text=True)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def store(srv, corpus, tmp_path_factory):
    """The shared data store: the corpus files imported with the AWS CLI (job 1), then a generated
    study imported with boto3 (job 2)."""
    import pydicom

    root = tmp_path_factory.mktemp("reads-store")
    ds = make_datastore(srv, "reads")
    study = root / "study"
    study.mkdir()
    for name in CORPUS:
        shutil.copy(corpus / name, study / name)
    run_aws(srv, "s3", "mb", "s3://reads")
    run_aws(srv, "s3", "cp", "--recursive", "--only-show-errors", str(study), "s3://reads/corpus/")
    props, _ = start_and_wait(srv, ds, "s3://reads/corpus/", "s3://reads/corpus-out/")
    assert props["jobStatus"] == "COMPLETED", props
    manifest, lines = read_outputs(srv, props, root / "out")
    assert lines["FAILURE"] == [], lines["FAILURE"]
    corpus_sets = {pathlib.PurePosixPath(l["inputFile"]).name: l["importResponse"]["imageSetId"]
                   for l in lines["SUCCESS"]}
    assert set(corpus_sets) == set(CORPUS)
    assert len({corpus_sets[n] for n in ("SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_gdcm_KY.dcm")}) == 1
    assert len(set(corpus_sets.values())) == len(CORPUS) - 2

    gen_dir = root / "gen"
    summary = generate(gen_dir, "--studies", str(GEN_STUDIES), "--series-per-study", str(GEN_SERIES),
                       "--instances-per-series", str(GEN_INSTANCES), "--frames", "1", "--rows", "32",
                       "--cols", "48", "--bits", "8", "--conflict-every", str(GEN_CONFLICT_EVERY), "--seed", "21")
    files = {p.relative_to(gen_dir).as_posix(): p for p in sorted(gen_dir.rglob("*.dcm"))}
    placed, job2 = boto3_import(srv, ds, "reads", files, "gen")
    # One primary and one non-primary image set per generated series.
    series = []
    for s in summary["series"]:
        conflicting = set(s["conflicting_files"])
        mine = [k for k in files if k.startswith(pathlib.PurePosixPath(s["conflicting_files"][0]).parent.as_posix() + "/")]
        primary = {placed[k]["imageSetId"] for k in mine if k not in conflicting}
        other = {placed[k]["imageSetId"] for k in mine if k in conflicting}
        assert len(primary) == 1 and len(other) == 1
        src = pydicom.dcmread(files[mine[0]], stop_before_pixels=True)
        series.append({"primary": primary.pop(), "other": other.pop(), "patient_id": s["patient_id"],
                       "conflicting_patient_id": s["conflicting_patient_id"],
                       "study_uid": s["study_instance_uid"], "series_uid": s["series_instance_uid"],
                       "n_primary": len(mine) - len(conflicting), "n_other": len(conflicting), "src": src})
    gen_files = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files.values()}
    all_ids = set(corpus_sets.values()) | {s["primary"] for s in series} | {s["other"] for s in series}
    return {"ds": ds, "corpus_sets": corpus_sets, "series": series, "all": all_ids, "gen_files": gen_files,
            "corpus_ids": set(corpus_sets.values()), "gen_ids": all_ids - set(corpus_sets.values())}


@pytest.fixture(scope="module")
def versioned(srv, tmp_path_factory):
    """A data store whose one (primary) image set has 3 versions: v1 = 3 instances of 2 frames
    (CREATED); v2 = instance 1 re-imported with changed pixels and ContentTime (IMPORTED, its frames
    replaced); v3 = instance 2 re-imported unchanged (IMPORTED, its frames replaced)."""
    import pydicom

    root = tmp_path_factory.mktemp("reads-versions")
    ds = make_datastore(srv, "versions")
    summary = generate(root / "gen", "--instances-per-series", "3", "--frames", "2", "--rows", "24", "--cols", "20",
                       "--bits", "12", "--seed", "31")
    files = sorted((root / "gen").rglob("*.dcm"))
    assert len(files) == 3
    sops = summary["series"][0]["sop_instance_uids"]
    placed, job = boto3_import(srv, ds, "versions", {f.name: f for f in files}, "v1")
    (image_set,) = {r["imageSetId"] for r in placed.values()}
    changed = root / "changed" / files[0].name
    changed.parent.mkdir()
    src = pydicom.dcmread(files[0])
    assert int(src.BitsStored) == 12 and int(src.PixelRepresentation) == 0
    new_pixels = (4095 - src.pixel_array.astype(np.int64)).astype(np.uint16)
    src.PixelData = new_pixels.astype("<u2").tobytes()
    src.ContentTime = "235958"
    src.save_as(changed)
    placed2, job2 = boto3_import(srv, ds, "versions", {changed.name: changed}, "v2")
    assert placed2[changed.name]["imageSetId"] == image_set
    assert job2["imageSetsSummary"][0]["imageSetVersion"] == 2
    placed3, job3 = boto3_import(srv, ds, "versions", {files[1].name: files[1]}, "v3")
    assert job3["imageSetsSummary"][0]["imageSetVersion"] == 3
    return {"ds": ds, "image_set": image_set, "sops": sops, "series_uid": summary["series"][0]["series_instance_uid"],
            "files": files, "changed": changed, "new_pixels": new_pixels}


# --- helpers ------------------------------------------------------------------------------------


def gunzip_json(data):
    assert data[:2] == b"\x1f\x8b", "metadata is gzip"
    return json.loads(gzip.decompress(data))


def metadata(client, ds, image_set, version=None):
    kw = {"versionId": version} if version else {}
    resp = client.get_image_set_metadata(datastoreId=ds, imageSetId=image_set, **kw)
    assert resp["contentType"] == "application/json"
    assert resp["contentEncoding"] == "gzip"
    return gunzip_json(resp["imageSetMetadataBlob"].read())


def instances_of(doc):
    out = {}
    for series_uid, series in doc["Study"]["Series"].items():
        for sop, inst in series["Instances"].items():
            out[sop] = inst
    return out


def reference_pixels(path):
    """(data set, frames array with a leading frame axis) from pydicom."""
    import pydicom

    src = pydicom.dcmread(path)
    arr = src.pixel_array
    if int(getattr(src, "NumberOfFrames", 1) or 1) == 1:
        arr = arr[None, ...]
    return src, arr


def native_dtype(src):
    """The checksum's sample layout: 1 byte up to 8 bits stored, else 2 bytes little-endian."""
    signed = int(getattr(src, "PixelRepresentation", 0)) == 1
    if int(src.BitsStored) <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    return np.dtype("<i2" if signed else "<u2")


def decode_htj2k(data):
    """Decoded with two decoders independent of Lightbox (OpenJPEG via pylibjpeg-openjpeg, OpenJPH
    via imagecodecs); both must agree. Colour comes back as (rows, cols, 3)."""
    import openjpeg

    got = openjpeg.decode(data)
    try:
        import imagecodecs
    except ImportError:
        return got
    other = imagecodecs.htj2k_decode(data)
    if other.ndim == 3 and other.shape[0] in (3, 4) and other.shape != got.shape:
        other = np.moveaxis(other, 0, -1)
    assert other.shape == got.shape and np.array_equal(other.astype(np.int64), got.astype(np.int64)), \
        "OpenJPEG and OpenJPH disagree"
    return got


def check_frame(data, entry, src, want, name):
    """A frame fetched through GetImageFrame: its size, decoded pixels equal pydicom's exactly, and
    CRC-32 of the decoded native little-endian buffer == the full-resolution checksum."""
    assert entry["FrameSizeInBytes"] == len(data), name
    got = decode_htj2k(data)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert np.array_equal(got.astype(np.int64), want.astype(np.int64)), f"{name}: pixels differ"
    checksums = entry["PixelDataChecksumFromBaseToFullResolution"]
    full = checksums[-1]
    assert full["Width"] == want.shape[1] and full["Height"] == want.shape[0], name
    assert [c["Width"] for c in checksums] == sorted(c["Width"] for c in checksums), "base to full"
    native = np.ascontiguousarray(got.astype(np.int64).astype(native_dtype(src)))
    assert zlib.crc32(native.tobytes()) == full["Checksum"], f"{name}: checksum"


def client_error(excinfo):
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def expect_error(code, status, fn, **kw):
    with pytest.raises(ClientError) as e:
        fn(**kw)
    assert client_error(e) == (code, status), (fn.__name__, kw, e.value.response["Error"])
    assert e.value.response["Error"]["Message"]
    return e.value


def search_all(client, ds, criteria=None, page_size=None):
    """Every summary through the boto3 paginator (and the echoed sort of every page)."""
    kw = {"datastoreId": ds}
    if criteria is not None:
        kw["searchCriteria"] = criteria
    cfg = {"PageSize": page_size} if page_size else {}
    items, sorts, pages = [], [], 0
    for page in client.get_paginator("search_image_sets").paginate(**kw, PaginationConfig=cfg):
        pages += 1
        items += page["imageSetsMetadataSummaries"]
        sorts.append(page.get("sort"))
    return items, sorts, pages


def ids_of(summaries):
    return {s["imageSetId"] for s in summaries}


def utc(dt):
    return dt.astimezone(UTC)


def eq(**value):
    return {"filters": [{"operator": "EQUAL", "values": [value]}]}


# --- 1. the AWS CLI walkthrough -----------------------------------------------------------------


def test_cli_search_get_metadata_and_frames(srv, store, corpus, tmp_path):
    """import (fixture, CLI) → search-image-sets → get-image-set → get-image-set-metadata (gunzip)
    → get-image-frame for every frame of every corpus source, decoded independently."""
    ds = store["ds"]
    everything = aws_json(srv, "medical-imaging", "search-image-sets", "--datastore-id", ds)
    assert ids_of(everything["imageSetsMetadataSummaries"]) == store["all"]
    assert everything["sort"] == {"sortField": "updatedAt", "sortOrder": "DESC"}
    assert "nextToken" not in everything and "NextToken" not in everything
    empty = aws_json(srv, "medical-imaging", "search-image-sets", "--datastore-id", ds, "--search-criteria", "{}")
    assert ids_of(empty["imageSetsMetadataSummaries"]) == store["all"]
    # The CLI paginates by itself with --page-size; --max-items gives a NextToken to resume from.
    paged = aws_json(srv, "medical-imaging", "search-image-sets", "--datastore-id", ds, "--page-size", "4")
    assert [s["imageSetId"] for s in paged["imageSetsMetadataSummaries"]] == \
        [s["imageSetId"] for s in everything["imageSetsMetadataSummaries"]]
    first = aws_json(srv, "medical-imaging", "search-image-sets", "--datastore-id", ds, "--max-items", "5")
    assert len(first["imageSetsMetadataSummaries"]) == 5 and first["NextToken"]
    rest = aws_json(srv, "medical-imaging", "search-image-sets", "--datastore-id", ds,
                    "--starting-token", first["NextToken"])
    assert [s["imageSetId"] for s in first["imageSetsMetadataSummaries"] + rest["imageSetsMetadataSummaries"]] == \
        [s["imageSetId"] for s in everything["imageSetsMetadataSummaries"]]

    # Timestamps on the command line: ISO 8601 strings or epoch seconds.
    for lo, hi in (("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"), (946684800, 4102444800)):
        crit = {"filters": [{"operator": "BETWEEN", "values": [{"createdAt": lo}, {"createdAt": hi}]}]}
        out = aws_json(srv, "medical-imaging", "search-image-sets", "--datastore-id", ds,
                       "--search-criteria", json.dumps(crit))
        assert ids_of(out["imageSetsMetadataSummaries"]) == store["all"], (lo, hi)

    ct = store["corpus_sets"]["CT_small.dcm"]
    found = aws_json(srv, "medical-imaging", "search-image-sets", "--datastore-id", ds, "--search-criteria",
                     json.dumps(eq(DICOMPatientId="1CT1")))["imageSetsMetadataSummaries"]
    assert [s["imageSetId"] for s in found] == [ct]
    (summary,) = found
    assert summary["version"] == 1 and isinstance(summary["version"], int)
    assert summary["isPrimary"] is True and summary["storageTier"] == "FREQUENT_ACCESS"
    for key in ("createdAt", "updatedAt", "lastAccessedAt"):
        assert isinstance(summary[key], (int, float)) and summary[key] > 1.7e9, key
    tags = summary["DICOMTags"]
    assert tags["DICOMPatientId"] == "1CT1" and tags["DICOMStudyDate"] == "20040119"
    assert tags["DICOMStudyTime"] == "072730" and tags["DICOMSeriesModality"] == "CT"
    assert tags["DICOMNumberOfStudyRelatedSeries"] == 1 and tags["DICOMNumberOfStudyRelatedInstances"] == 1
    assert tags["DICOMStudyInstanceUID"] == "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    assert tags["DICOMSeriesInstanceUID"] == "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"

    frames_checked = kept_checked = 0
    done = set()
    for name in CORPUS:
        image_set = store["corpus_sets"][name]
        got = aws_json(srv, "medical-imaging", "get-image-set", "--datastore-id", ds, "--image-set-id", image_set)
        assert got["datastoreId"] == ds and got["imageSetId"] == image_set
        assert got["versionId"] == "1"
        assert got["imageSetState"] == "ACTIVE" and got["imageSetWorkflowStatus"] == "CREATED"
        assert got["imageSetArn"] == f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{ds}/imageset/{image_set}"
        assert got["isPrimary"] is True and got["storageTier"] == "FREQUENT_ACCESS"
        assert got["createdAt"] <= got["updatedAt"] and got["lastAccessedAt"] >= got["createdAt"]
        assert "overrides" not in got and "deletedAt" not in got and "message" not in got

        meta_file = tmp_path / f"{image_set}.json.gz"
        if image_set not in done:
            out = aws_json(srv, "medical-imaging", "get-image-set-metadata", "--datastore-id", ds,
                           "--image-set-id", image_set, str(meta_file))
            assert out == {"contentType": "application/json", "contentEncoding": "gzip"}, out
            done.add(image_set)
        doc = gunzip_json(meta_file.read_bytes())
        assert doc["SchemaVersion"] == "1.1" and doc["DatastoreID"] == ds and doc["ImageSetID"] == image_set

        src, frames = reference_pixels(corpus / name)
        inst = doc["Study"]["Series"][src.SeriesInstanceUID]["Instances"][src.SOPInstanceUID]
        assert len(inst["ImageFrames"]) == len(frames), name
        for i, (entry, want) in enumerate(zip(inst["ImageFrames"], frames)):
            frame_file = tmp_path / f"{name}-{i}.frame"
            out = aws_json(srv, "medical-imaging", "get-image-frame", "--datastore-id", ds, "--image-set-id",
                           image_set, "--image-frame-information", f"imageFrameId={entry['ID']}", str(frame_file))
            data = frame_file.read_bytes()
            if name in KEPT:
                ts, content_type = KEPT[name]
                assert inst["StoredTransferSyntaxUID"] == ts, name
                assert out == {"contentType": content_type}, (name, out)
                import pydicom

                encoded = list(pydicom.encaps.generate_frames(src.PixelData, number_of_frames=len(frames)))
                assert data.rstrip(b"\0") == encoded[i].rstrip(b"\0"), f"{name}: kept frame bytes"
                kept_checked += 1
                continue
            assert inst["StoredTransferSyntaxUID"] == HTJ2K, name
            assert out == {"contentType": "image/jph"}, (name, out)
            check_frame(data, entry, src, want, f"{name} frame {i}")
            frames_checked += 1
    assert frames_checked == 1 + 1 + 1 + 1 + 1 + 10 and kept_checked == 2

    # An unknown frame id through the CLI: ResourceNotFoundException.
    bad = run_aws(srv, "medical-imaging", "get-image-frame", "--datastore-id", ds, "--image-set-id", ct,
                  "--image-frame-information", "imageFrameId=" + "z" * 32, str(tmp_path / "nope"), check=False)
    assert bad.returncode != 0 and "ResourceNotFoundException" in bad.stderr, bad.stderr


def test_generated_frames_through_boto3(srv, store):
    """The 8-bit generated instances: every frame of every generated image set through boto3's
    get_image_frame (streaming body), decoded and compared with pydicom, checksummed."""
    client = srv.client()
    ds = store["ds"]
    checked = 0
    for s in store["series"]:
        for image_set in (s["primary"], s["other"]):
            doc = metadata(client, ds, image_set)
            for sop, inst in instances_of(doc).items():
                assert inst["StoredTransferSyntaxUID"] == HTJ2K
                src, frames = reference_pixels(store["gen_files"][sop])
                assert int(src.BitsStored) == 8 and len(inst["ImageFrames"]) == len(frames) == 1
                for entry, want in zip(inst["ImageFrames"], frames):
                    resp = client.get_image_frame(datastoreId=ds, imageSetId=image_set,
                                                  imageFrameInformation={"imageFrameId": entry["ID"]})
                    assert resp["contentType"] == "image/jph"
                    data = resp["imageFrameBlob"].read()
                    check_frame(data, entry, src, want, f"generated {sop}")
                    assert entry["MinPixelValue"] == int(want.min()) and entry["MaxPixelValue"] == int(want.max())
                    checked += 1
    assert checked == GEN_STUDIES * GEN_SERIES * GEN_INSTANCES


# --- 2. versions --------------------------------------------------------------------------------


def test_cli_versions(srv, versioned, tmp_path):
    ds, image_set = versioned["ds"], versioned["image_set"]
    listed = aws_json(srv, "medical-imaging", "list-image-set-versions", "--datastore-id", ds,
                      "--image-set-id", image_set)["imageSetPropertiesList"]
    assert [v["versionId"] for v in listed] == ["3", "2", "1"]
    assert [v["ImageSetWorkflowStatus"] for v in listed] == ["IMPORTED", "IMPORTED", "CREATED"]
    for v in listed:
        assert "imageSetWorkflowStatus" not in v, "ListImageSetVersions spells it ImageSetWorkflowStatus"
        assert v["imageSetId"] == image_set and v["imageSetState"] == "ACTIVE" and v["isPrimary"] is True
        assert "overrides" not in v and "deletedAt" not in v and "message" not in v
    assert len({v["createdAt"] for v in listed}) == 1, "createdAt is the image set's creation time"
    assert listed[2]["updatedAt"] < listed[1]["updatedAt"] < listed[0]["updatedAt"]
    # --page-size 1: the CLI pages with maxResults=1 through every version.
    paged = aws_json(srv, "medical-imaging", "list-image-set-versions", "--datastore-id", ds,
                     "--image-set-id", image_set, "--page-size", "1")["imageSetPropertiesList"]
    assert paged == listed
    one = aws_json(srv, "medical-imaging", "list-image-set-versions", "--datastore-id", ds,
                   "--image-set-id", image_set, "--max-items", "1")
    assert [v["versionId"] for v in one["imageSetPropertiesList"]] == ["3"] and one["NextToken"]

    docs = {}
    for v in listed:
        n = v["versionId"]
        got = aws_json(srv, "medical-imaging", "get-image-set", "--datastore-id", ds, "--image-set-id", image_set,
                       "--version-id", n)
        assert got["versionId"] == n and got["imageSetState"] == "ACTIVE"
        assert got["imageSetWorkflowStatus"] == v["ImageSetWorkflowStatus"]
        assert got["createdAt"] == v["createdAt"] and got["updatedAt"] == v["updatedAt"]
        assert got["isPrimary"] is True
        out = aws_json(srv, "medical-imaging", "get-image-set-metadata", "--datastore-id", ds, "--image-set-id",
                       image_set, "--version-id", n, str(tmp_path / f"v{n}.json.gz"))
        assert out["contentEncoding"] == "gzip"
        docs[n] = gunzip_json((tmp_path / f"v{n}.json.gz").read_bytes())
        assert docs[n]["ImageSetID"] == image_set and docs[n]["DatastoreID"] == ds
    latest = aws_json(srv, "medical-imaging", "get-image-set", "--datastore-id", ds, "--image-set-id", image_set)
    assert latest["versionId"] == "3" and latest["imageSetWorkflowStatus"] == "IMPORTED"

    sop1, sop2, sop3 = versioned["sops"]
    frames = {n: {sop: [f["ID"] for f in inst["ImageFrames"]] for sop, inst in instances_of(d).items()}
              for n, d in docs.items()}
    for n in frames:
        assert set(frames[n]) == {sop1, sop2, sop3} and all(len(f) == 2 for f in frames[n].values())
    # v2 replaced instance 1's frames (and its ContentTime); v3 replaced instance 2's.
    assert frames["1"][sop1] != frames["2"][sop1] == frames["3"][sop1]
    assert frames["1"][sop2] == frames["2"][sop2] != frames["3"][sop2]
    assert frames["1"][sop3] == frames["2"][sop3] == frames["3"][sop3]
    assert instances_of(docs["2"])[sop1]["DICOM"]["ContentTime"] == "235958"
    assert instances_of(docs["1"])[sop1]["DICOM"]["ContentTime"] != "235958"

    def frame(frame_id, check=True):
        return run_aws(srv, "medical-imaging", "get-image-frame", "--datastore-id", ds, "--image-set-id", image_set,
                       "--image-frame-information", f"imageFrameId={frame_id}", str(tmp_path / "f.bin"),
                       "--output", "json", check=check)

    # Frames replaced in a later version are gone from the image set (404)...
    for old in frames["1"][sop1] + frames["1"][sop2]:
        proc = frame(old, check=False)
        assert proc.returncode != 0 and "ResourceNotFoundException" in proc.stderr, proc.stderr
    # ...the live ones are served: instance 1's new frames hold the changed pixels.
    for i, frame_id in enumerate(frames["3"][sop1]):
        frame(frame_id)
        got = decode_htj2k((tmp_path / "f.bin").read_bytes())
        assert np.array_equal(got.astype(np.int64), versioned["new_pixels"][i].astype(np.int64))
    for frame_id in frames["3"][sop2] + frames["3"][sop3]:
        frame(frame_id)

    # Unknown / malformed versions.
    proc = run_aws(srv, "medical-imaging", "get-image-set", "--datastore-id", ds, "--image-set-id", image_set,
                   "--version-id", "4", check=False)
    assert proc.returncode != 0 and "ResourceNotFoundException" in proc.stderr, proc.stderr
    proc = run_aws(srv, "medical-imaging", "get-image-set-metadata", "--datastore-id", ds, "--image-set-id",
                   image_set, "--version-id", "4", str(tmp_path / "nope.gz"), check=False)
    assert proc.returncode != 0 and "ResourceNotFoundException" in proc.stderr, proc.stderr
    proc = run_aws(srv, "medical-imaging", "get-image-set", "--datastore-id", ds, "--image-set-id", image_set,
                   "--version-id", "abc", check=False)
    assert proc.returncode != 0 and "ValidationException" in proc.stderr, proc.stderr

    # Search reports the latest version as an integer.
    (summary,) = aws_json(srv, "medical-imaging", "search-image-sets", "--datastore-id", ds)["imageSetsMetadataSummaries"]
    assert summary["imageSetId"] == image_set and summary["version"] == 3
    assert summary["createdAt"] == listed[-1]["createdAt"] and summary["updatedAt"] == listed[0]["updatedAt"]


def test_boto3_versions_paging(srv, versioned):
    client = srv.client()
    ds, image_set = versioned["ds"], versioned["image_set"]
    # maxResults=1 by hand: one version a page, nextToken only while more remain.
    seen, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = client.list_image_set_versions(datastoreId=ds, imageSetId=image_set, maxResults=1, **kw)
        assert len(page["imageSetPropertiesList"]) == 1
        seen.append(page["imageSetPropertiesList"][0])
        token = page.get("nextToken")
        if not token:
            break
    assert [v["versionId"] for v in seen] == ["3", "2", "1"]
    assert isinstance(seen[0]["createdAt"], datetime.datetime)
    # The boto3 paginator.
    pages = list(client.get_paginator("list_image_set_versions").paginate(
        datastoreId=ds, imageSetId=image_set, PaginationConfig={"PageSize": 2}))
    assert [len(p["imageSetPropertiesList"]) for p in pages] == [2, 1]
    assert [v["versionId"] for p in pages for v in p["imageSetPropertiesList"]] == ["3", "2", "1"]
    full = client.get_paginator("list_image_set_versions").paginate(
        datastoreId=ds, imageSetId=image_set, PaginationConfig={"PageSize": 1}).build_full_result()
    assert [v["ImageSetWorkflowStatus"] for v in full["imageSetPropertiesList"]] == ["IMPORTED", "IMPORTED", "CREATED"]
    # Each version through boto3.
    for n in ("1", "2", "3"):
        got = client.get_image_set(datastoreId=ds, imageSetId=image_set, versionId=n)
        assert got["versionId"] == n
        doc = metadata(client, ds, image_set, version=n)
        assert doc["ImageSetID"] == image_set
    # Errors.
    expect_error("ResourceNotFoundException", 404, client.list_image_set_versions, datastoreId=ds,
                 imageSetId="0" * 32)
    expect_error("ResourceNotFoundException", 404, client.list_image_set_versions, datastoreId="1" * 32,
                 imageSetId=image_set)
    expect_error("ValidationException", 400, client.list_image_set_versions, datastoreId=ds, imageSetId=image_set,
                 nextToken="not-a-token")
    raw = srv.client(parameter_validation=False)
    expect_error("ValidationException", 400, raw.list_image_set_versions, datastoreId=ds, imageSetId=image_set,
                 maxResults=0)
    expect_error("ValidationException", 400, raw.list_image_set_versions, datastoreId=ds, imageSetId=image_set,
                 maxResults=51)
    # Tokens are bound to their listing: another image set's, or a search's, is refused.
    token = client.list_image_set_versions(datastoreId=ds, imageSetId=image_set, maxResults=1)["nextToken"]
    other = client.search_image_sets(datastoreId=ds)["imageSetsMetadataSummaries"]
    assert [o["imageSetId"] for o in other] == [image_set]
    expect_error("ValidationException", 400, client.search_image_sets, datastoreId=ds, nextToken=token)
    # A search summary carries the latest version as an integer; one image set: no nextToken.
    page = client.search_image_sets(datastoreId=ds, maxResults=1)
    assert [s["version"] for s in page["imageSetsMetadataSummaries"]] == [3] and "nextToken" not in page


# --- 3. boto3: search filters, sort, paginators, errors -----------------------------------------


def test_boto3_search_filters(srv, store, corpus):
    client = srv.client()
    ds = store["ds"]
    cs = store["corpus_sets"]
    everything, sorts, pages = search_all(client, ds)
    assert ids_of(everything) == store["all"] and len(everything) == len(store["all"])
    assert pages == 1 and sorts == [{"sortField": "updatedAt", "sortOrder": "DESC"}]

    def find(criteria):
        return ids_of(client.search_image_sets(datastoreId=ds, searchCriteria=criteria)["imageSetsMetadataSummaries"])

    # EQUAL on the string attributes (exact match).
    assert find(eq(DICOMPatientId="1CT1")) == {cs["CT_small.dcm"]}
    assert find(eq(DICOMPatientId="1ct1")) == set()
    assert find(eq(DICOMPatientId="1CT")) == set()
    assert find(eq(DICOMStudyInstanceUID="1.2.826.0.1.3680043.8.498.12406831542731051035295345080039845114")) == \
        {cs["SC_rgb.dcm"]}
    assert find(eq(DICOMSeriesInstanceUID="1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457")) == {cs["MR_small_RLE.dcm"]}
    s0 = store["series"][0]
    study0 = {s["primary"] for s in store["series"] if s["study_uid"] == s0["study_uid"]} | \
        {s["other"] for s in store["series"] if s["study_uid"] == s0["study_uid"]}
    assert len(study0) == 2 * GEN_SERIES
    assert find(eq(DICOMStudyInstanceUID=s0["study_uid"])) == study0
    assert find(eq(DICOMSeriesInstanceUID=s0["series_uid"])) == {s0["primary"], s0["other"]}
    assert find(eq(DICOMPatientId=s0["conflicting_patient_id"])) == \
        {s["other"] for s in store["series"] if s["study_uid"] == s0["study_uid"]}
    assert find(eq(DICOMAccessionNumber=str(s0["src"].AccessionNumber))) == study0
    import pydicom

    study_id = str(s0["src"].StudyID)
    assert find(eq(DICOMStudyId=study_id)) == \
        {x for s in store["series"] if str(s["src"].StudyID) == study_id for x in (s["primary"], s["other"])} | \
        {cs[n] for n in CORPUS if str(pydicom.dcmread(corpus / n, stop_before_pixels=True).get("StudyID", "")) == study_id}
    # isPrimary.
    non_primary = {s["other"] for s in store["series"]}
    assert find(eq(isPrimary=False)) == non_primary
    assert find(eq(isPrimary=True)) == store["all"] - non_primary
    # Two filters are ANDed.
    both = {"filters": [{"operator": "EQUAL", "values": [{"DICOMStudyInstanceUID": s0["study_uid"]}]},
                        {"operator": "EQUAL", "values": [{"isPrimary": False}]}]}
    assert find(both) == {s["other"] for s in store["series"] if s["study_uid"] == s0["study_uid"]}

    # BETWEEN on createdAt / updatedAt with datetimes (inclusive bounds, millisecond precision).
    by_id = {s["imageSetId"]: s for s in everything}
    corpus_created = [utc(by_id[i]["createdAt"]) for i in store["corpus_ids"]]
    gen_created = [utc(by_id[i]["createdAt"]) for i in store["gen_ids"]]
    assert max(corpus_created) < min(gen_created), "two jobs, one after the other"

    def between(attr, lo, hi):
        return {"filters": [{"operator": "BETWEEN", "values": [{attr: lo}, {attr: hi}]}]}

    assert find(between("createdAt", min(corpus_created), max(corpus_created))) == store["corpus_ids"]
    assert find(between("createdAt", min(gen_created), max(gen_created))) == store["gen_ids"]
    updated = sorted(utc(s["updatedAt"]) for s in everything)
    assert find(between("updatedAt", updated[0], updated[-1])) == store["all"]
    assert find(between("updatedAt", updated[0] - datetime.timedelta(days=1),
                        updated[-1] + datetime.timedelta(days=1))) == store["all"]
    later = updated[-1] + datetime.timedelta(milliseconds=1)
    assert find(between("updatedAt", later, later + datetime.timedelta(days=1))) == set()
    # EQUAL on a timestamp: the same millisecond.
    one = everything[0]
    assert one["imageSetId"] in find(eq(createdAt=utc(one["createdAt"])))
    assert find(eq(createdAt=utc(one["createdAt"]) - datetime.timedelta(days=365))) == set()

    # DICOMStudyDateAndTime.
    def study_dt(date, time_=None):
        v = {"DICOMStudyDate": date}
        if time_ is not None:
            v["DICOMStudyTime"] = time_
        return {"DICOMStudyDateAndTime": v}

    def dt_between(lo, hi):
        return {"filters": [{"operator": "BETWEEN", "values": [lo, hi]}]}

    ct, mr = cs["CT_small.dcm"], cs["MR_small_RLE.dcm"]
    assert find(dt_between(study_dt("20040101"), study_dt("20041231"))) == {ct, mr}
    assert find(dt_between(study_dt("20040119", "072730"), study_dt("20040119", "072730"))) == {ct}
    # A missing time is 00:00:00 for BETWEEN bounds.
    assert find(dt_between(study_dt("20040119", "072731"), study_dt("20040826"))) == set()
    assert find(dt_between(study_dt("20040119", "072731"), study_dt("20040826", "185059"))) == {mr}
    assert find(dt_between(study_dt("20040119"), study_dt("20040119", "072730.5"))) == {ct}
    # EQUAL with only a date is the whole day; with a time, that exact time.
    d0, t0 = str(s0["src"].StudyDate), str(s0["src"].StudyTime)
    assert find({"filters": [{"operator": "EQUAL", "values": [study_dt(d0)]}]}) == study0
    assert find({"filters": [{"operator": "EQUAL", "values": [study_dt(d0, t0)]}]}) == study0
    assert find({"filters": [{"operator": "EQUAL", "values": [study_dt("20040119")]}]}) == {ct}
    assert find({"filters": [{"operator": "EQUAL", "values": [study_dt("20040119", "072729")]}]}) == set()
    assert find({"filters": [{"operator": "EQUAL", "values": [study_dt("20040119", "0727")]}]}) == set()
    assert find({"filters": [{"operator": "EQUAL", "values": [study_dt("20040119", "072730.000")]}]}) == {ct}


def test_boto3_search_summaries_and_sort(srv, store):
    client = srv.client()
    ds = store["ds"]
    everything, _, _ = search_all(client, ds)
    by_id = {s["imageSetId"]: s for s in everything}
    for s in everything:
        assert s["version"] == 1 and s["storageTier"] == "FREQUENT_ACCESS"
        assert isinstance(s["createdAt"], datetime.datetime) and isinstance(s["lastAccessedAt"], datetime.datetime)
    # DICOMTags of the generated image sets against the source files (16 members; counts per study
    # over its primary image sets; a non-primary one counts itself).
    for ser in store["series"]:
        src = ser["src"]
        same_study = [x for x in store["series"] if x["study_uid"] == ser["study_uid"]]
        for image_set, patient, n_series, n_inst in (
            (ser["primary"], ser["patient_id"], len(same_study), sum(x["n_primary"] for x in same_study)),
            (ser["other"], ser["conflicting_patient_id"], 1, ser["n_other"]),
        ):
            tags = by_id[image_set]["DICOMTags"]
            assert by_id[image_set]["isPrimary"] is (image_set == ser["primary"])
            want = {
                "DICOMPatientId": patient,
                "DICOMStudyInstanceUID": ser["study_uid"],
                "DICOMSeriesInstanceUID": ser["series_uid"],
                "DICOMStudyId": str(src.StudyID),
                "DICOMStudyDate": str(src.StudyDate),
                "DICOMStudyTime": str(src.StudyTime),
                "DICOMAccessionNumber": str(src.AccessionNumber),
                "DICOMStudyDescription": str(src.StudyDescription),
                "DICOMPatientBirthDate": str(src.PatientBirthDate),
                "DICOMPatientSex": str(src.PatientSex),
                "DICOMSeriesModality": "CT",
                "DICOMSeriesBodyPart": str(src.BodyPartExamined),
                "DICOMSeriesNumber": int(src.SeriesNumber),
                "DICOMNumberOfStudyRelatedSeries": n_series,
                "DICOMNumberOfStudyRelatedInstances": n_inst,
            }
            assert set(tags) == set(want) | {"DICOMPatientName"}, sorted(set(tags) ^ (set(want) | {"DICOMPatientName"}))
            assert {k: tags[k] for k in want} == want, image_set
            assert tags["DICOMPatientName"] == str(src.PatientName)

    def check_order(items, field, order):
        keys = [(s[field], s["imageSetId"]) for s in items]
        assert keys == sorted(keys, reverse=(order == "DESC")), (field, order)

    check_order(everything, "updatedAt", "DESC")
    for field in ("createdAt", "updatedAt"):
        for order in ("ASC", "DESC"):
            sort = {"sortField": field, "sortOrder": order}
            items, sorts, pages = search_all(client, ds, {"sort": sort}, page_size=3)
            assert sorts == [sort] * pages and pages == -(-len(store["all"]) // 3)
            assert ids_of(items) == store["all"] and len(items) == len(store["all"])
            check_order(items, field, order)
    sort = {"sortField": "DICOMStudyDateAndTime", "sortOrder": "ASC"}
    resp = client.search_image_sets(datastoreId=ds, searchCriteria={"sort": sort})
    assert resp["sort"] == sort
    dated = [(s["DICOMTags"]["DICOMStudyDate"], s["DICOMTags"].get("DICOMStudyTime", "").ljust(6, "0"))
             for s in resp["imageSetsMetadataSummaries"]
             if s["DICOMTags"].get("DICOMStudyDate") and len(s["DICOMTags"].get("DICOMStudyTime", "")) in (0, 4, 6)]
    assert dated == sorted(dated) and len(dated) >= len(store["gen_ids"])
    # Filters + sort + paging together.
    crit = {"filters": [{"operator": "EQUAL", "values": [{"isPrimary": True}]}],
            "sort": {"sortField": "createdAt", "sortOrder": "ASC"}}
    items, sorts, pages = search_all(client, ds, crit, page_size=1)
    assert pages == len(items) == len(store["all"]) - len(store["series"])
    check_order(items, "createdAt", "ASC")
    # maxResults by hand: nextToken only while more remain.
    page = client.search_image_sets(datastoreId=ds, maxResults=50)
    assert "nextToken" not in page
    page = client.search_image_sets(datastoreId=ds, maxResults=len(store["all"]) - 1)
    assert page.get("nextToken")
    rest = client.search_image_sets(datastoreId=ds, maxResults=50, nextToken=page["nextToken"])
    assert len(rest["imageSetsMetadataSummaries"]) == 1 and "nextToken" not in rest


def test_boto3_read_errors(srv, store):
    client = srv.client()
    raw = srv.client(parameter_validation=False)
    ds = store["ds"]
    ct = store["corpus_sets"]["CT_small.dcm"]
    mr = store["corpus_sets"]["MR_small_RLE.dcm"]
    nf, bad = ("ResourceNotFoundException", 404), ("ValidationException", 400)
    # Unknown ids.
    expect_error(*nf, client.get_image_set, datastoreId=ds, imageSetId="0" * 32)
    expect_error(*nf, client.get_image_set, datastoreId="1" * 32, imageSetId=ct)
    expect_error(*nf, client.get_image_set_metadata, datastoreId=ds, imageSetId="0" * 32)
    expect_error(*nf, client.get_image_set_metadata, datastoreId="1" * 32, imageSetId=ct)
    expect_error(*nf, client.search_image_sets, datastoreId="1" * 32)
    expect_error(*nf, client.list_image_set_versions, datastoreId=ds, imageSetId="0" * 32)
    # Versions: unknown → 404, not a number → 400.
    expect_error(*nf, client.get_image_set, datastoreId=ds, imageSetId=ct, versionId="2")
    expect_error(*nf, client.get_image_set, datastoreId=ds, imageSetId=ct, versionId="999999")
    expect_error(*nf, client.get_image_set_metadata, datastoreId=ds, imageSetId=ct, versionId="2")
    expect_error(*nf, client.get_image_set, datastoreId=ds, imageSetId=ct, versionId="0")
    # Version 1 by number, and the one-version listing.
    assert client.get_image_set(datastoreId=ds, imageSetId=ct, versionId="1")["versionId"] == "1"
    (only,) = client.list_image_set_versions(datastoreId=ds, imageSetId=ct)["imageSetPropertiesList"]
    assert only["versionId"] == "1" and only["ImageSetWorkflowStatus"] == "CREATED" and only["isPrimary"] is True
    # A non-primary image set says so.
    other = store["series"][0]["other"]
    assert client.get_image_set(datastoreId=ds, imageSetId=other)["isPrimary"] is False
    assert client.list_image_set_versions(datastoreId=ds, imageSetId=other)["imageSetPropertiesList"][0]["isPrimary"] is False
    for v in ("abc", "-1", "1.0"):
        expect_error(*bad, client.get_image_set, datastoreId=ds, imageSetId=ct, versionId=v)
        expect_error(*bad, client.get_image_set_metadata, datastoreId=ds, imageSetId=ct, versionId=v)
    # Malformed ids.
    expect_error(*bad, client.get_image_set, datastoreId=ds, imageSetId="NOT-AN-ID")
    # Frames: made up, of another image set, malformed.
    mr_doc = metadata(client, ds, mr)
    mr_frame = next(iter(instances_of(mr_doc).values()))["ImageFrames"][0]["ID"]
    expect_error(*nf, client.get_image_frame, datastoreId=ds, imageSetId=ct,
                 imageFrameInformation={"imageFrameId": "z" * 32})
    expect_error(*nf, client.get_image_frame, datastoreId=ds, imageSetId=ct,
                 imageFrameInformation={"imageFrameId": mr_frame})
    expect_error(*nf, client.get_image_frame, datastoreId=ds, imageSetId="0" * 32,
                 imageFrameInformation={"imageFrameId": mr_frame})
    expect_error(*nf, client.get_image_frame, datastoreId="1" * 32, imageSetId=mr,
                 imageFrameInformation={"imageFrameId": mr_frame})
    expect_error(*bad, client.get_image_frame, datastoreId=ds, imageSetId=mr,
                 imageFrameInformation={"imageFrameId": "ZZ"})
    # The MR frame is fine in its own image set.
    assert client.get_image_frame(datastoreId=ds, imageSetId=mr,
                                  imageFrameInformation={"imageFrameId": mr_frame})["imageFrameBlob"].read()

    # Search filters the service refuses.
    def search_error(criteria, client_=raw, **kw):
        return expect_error(*bad, client_.search_image_sets, datastoreId=ds, searchCriteria=criteria, **kw)

    now = datetime.datetime.now(UTC)
    search_error({"filters": [{"operator": "BETWEEN", "values": [{"DICOMPatientId": "a"}, {"DICOMPatientId": "b"}]}]})
    search_error({"filters": [{"operator": "BETWEEN", "values": [{"isPrimary": False}, {"isPrimary": True}]}]})
    search_error({"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "a"}, {"DICOMPatientId": "b"}]}]})
    search_error({"filters": [{"operator": "BETWEEN", "values": [{"createdAt": now}]}]})
    search_error({"filters": [{"operator": "BETWEEN", "values": [{"createdAt": now},
                                                                  {"updatedAt": now}]}]})
    search_error({"filters": [{"operator": "BETWEEN", "values": [{"updatedAt": now},
                                                                  {"updatedAt": now - datetime.timedelta(days=1)}]}]})
    search_error({"filters": [{"operator": "BETWEEN", "values": [
        {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20050101"}},
        {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20040101"}}]}]})
    for date in ("2004-01-19", "040119", "2004011", "abcdefgh"):
        search_error(eq(DICOMStudyDateAndTime={"DICOMStudyDate": date}), client_=client)
    for bad_time in ("072", "07273x", "0727301", "072730.1234567", "0727.5"):
        search_error(eq(DICOMStudyDateAndTime={"DICOMStudyDate": "20040119", "DICOMStudyTime": bad_time}),
                     client_=client)
    # The legacy ACR-NEMA form HH:MM:SS is accepted (the server drops the colons).
    legacy = client.search_image_sets(datastoreId=ds, searchCriteria=eq(
        DICOMStudyDateAndTime={"DICOMStudyDate": "20040119", "DICOMStudyTime": "07:27:30"}))
    assert ids_of(legacy["imageSetsMetadataSummaries"]) == {ct}
    search_error({"filters": [{"operator": "EQUAL", "values": [{}]}]})
    search_error({"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "a", "DICOMStudyId": "b"}]}]})
    search_error({"filters": [eq(DICOMPatientId="a")["filters"][0]] * 3})
    search_error({"filters": [{"operator": "LIKE", "values": [{"DICOMPatientId": "a"}]}]})
    search_error({"sort": {"sortField": "DICOMPatientId", "sortOrder": "ASC"}})
    expect_error(*bad, raw.search_image_sets, datastoreId=ds, maxResults=0)
    expect_error(*bad, raw.search_image_sets, datastoreId=ds, maxResults=51)
    expect_error(*bad, client.search_image_sets, datastoreId=ds, nextToken="forged")
    # Validation messages never echo the (sensitive) search values.
    err = expect_error(*bad, client.search_image_sets, datastoreId=ds,
                       searchCriteria=eq(DICOMStudyDateAndTime={"DICOMStudyDate": "19qz0101"}))
    assert "19qz0101" not in err.response["Error"]["Message"]
    err = expect_error(*bad, raw.search_image_sets, datastoreId=ds, searchCriteria={"filters": [
        {"operator": "BETWEEN", "values": [{"DICOMPatientId": "SECRET-PID-42"}, {"DICOMPatientId": "SECRET-PID-43"}]}]})
    assert "SECRET-PID" not in err.response["Error"]["Message"]
    # A token of another image set's version listing is no search token, and the reverse.
    s0 = store["series"][0]
    page = client.search_image_sets(datastoreId=ds, maxResults=1)
    expect_error(*bad, client.list_image_set_versions, datastoreId=ds, imageSetId=s0["primary"],
                 nextToken=page["nextToken"])
    # A token is bound to its filters.
    page = client.search_image_sets(datastoreId=ds, maxResults=1, searchCriteria=eq(isPrimary=True))
    expect_error(*bad, client.search_image_sets, datastoreId=ds, maxResults=1, nextToken=page["nextToken"],
                 searchCriteria=eq(isPrimary=False))
    assert client.search_image_sets(datastoreId=ds, maxResults=1, nextToken=page["nextToken"],
                                    searchCriteria=eq(isPrimary=True))["imageSetsMetadataSummaries"]


def test_raw_wire_details(srv, store, versioned):
    """What a hand-written client sees: SearchImageSets with no body or `{}`, integers where the
    model has integers, and GetImageSetMetadata's body being the stored gzip document byte for byte
    (never re-compressed) for every version."""
    from test_import import blob_root, catalog_rows

    ds = store["ds"]
    for body in (b"", b"{}"):
        status, headers, data = signed_request(srv, "POST", f"/datastore/{ds}/searchImageSets", body=body)
        assert status == 200, data
        out = json.loads(data)
        assert {s["imageSetId"] for s in out["imageSetsMetadataSummaries"]} == store["all"]
        assert out["sort"] == {"sortField": "updatedAt", "sortOrder": "DESC"} and "nextToken" not in out
        for summary in out["imageSetsMetadataSummaries"]:
            assert type(summary["version"]) is int
            tags = summary["DICOMTags"]
            for key in ("DICOMSeriesNumber", "DICOMNumberOfStudyRelatedSeries", "DICOMNumberOfStudyRelatedInstances"):
                assert key not in tags or type(tags[key]) is int, key
            assert all(v not in ("", None) for v in tags.values()), "absent values are omitted"
            for key in ("createdAt", "updatedAt", "lastAccessedAt"):
                assert isinstance(summary[key], (int, float)), key
    sc = json.loads(signed_request(srv, "POST", f"/datastore/{ds}/searchImageSets",
                                   body=json.dumps(eq(DICOMPatientId="ID1")).encode())[2])
    (sc,) = sc["imageSetsMetadataSummaries"]
    assert sc["imageSetId"] == store["corpus_sets"]["SC_rgb.dcm"]
    assert sc["DICOMTags"]["DICOMNumberOfStudyRelatedSeries"] == 1
    assert sc["DICOMTags"]["DICOMNumberOfStudyRelatedInstances"] == 3

    vds, image_set = versioned["ds"], versioned["image_set"]
    for n in ("1", "2", "3", None):
        query = f"?version={n}" if n else ""
        status, headers, data = signed_request(
            srv, "POST", f"/datastore/{vds}/imageSet/{image_set}/getImageSetMetadata{query}")
        assert status == 200
        assert headers["content-type"] == "application/json" and headers["content-encoding"] == "gzip"
        assert int(headers["content-length"]) == len(data)
        (key,) = catalog_rows(srv, f"SELECT metadata_key FROM image_set_versions WHERE datastore_id = '{vds}' "
                                   f"AND image_set_id = '{image_set}' AND version = {n or 3}")[0]
        assert data == (blob_root(srv) / key).read_bytes(), f"version {n}: the stored document, byte for byte"
    status, headers, data = signed_request(srv, "POST", f"/datastore/{vds}/imageSet/{image_set}/getImageSet?version=x")
    assert status == 400 and headers["x-amzn-errortype"].startswith("ValidationException")
    status, headers, data = signed_request(srv, "POST", f"/datastore/{vds}/imageSet/{image_set}/getImageSet?version=0")
    assert status == 404 and headers["x-amzn-errortype"].startswith("ResourceNotFoundException")


def test_jpeg2000_datastore_frames(srv, corpus):
    """A JPEG_2000_LOSSLESS data store: frames are served as image/jp2 and decode (OpenJPEG) to the
    source pixels with the document's checksum."""
    import openjpeg

    client = srv.client()
    ds = make_datastore(srv, "reads-j2k", fmt="JPEG_2000_LOSSLESS")
    names = ("CT_small.dcm", "SC_rgb.dcm")
    placed, _ = boto3_import(srv, ds, "reads-j2k", {n: corpus / n for n in names}, "j")
    for name in names:
        image_set = placed[name]["imageSetId"]
        src, frames = reference_pixels(corpus / name)
        inst = instances_of(metadata(client, ds, image_set))[str(src.SOPInstanceUID)]
        assert inst["StoredTransferSyntaxUID"] == "1.2.840.10008.1.2.4.90"
        for entry, want in zip(inst["ImageFrames"], frames):
            resp = client.get_image_frame(datastoreId=ds, imageSetId=image_set,
                                          imageFrameInformation={"imageFrameId": entry["ID"]})
            assert resp["contentType"] == "image/jp2"
            data = resp["imageFrameBlob"].read()
            assert entry["FrameSizeInBytes"] == len(data)
            got = openjpeg.decode(data)
            assert got.shape == want.shape and np.array_equal(got.astype(np.int64), want.astype(np.int64)), name
            native = np.ascontiguousarray(got.astype(np.int64).astype(native_dtype(src)))
            assert zlib.crc32(native.tobytes()) == entry["PixelDataChecksumFromBaseToFullResolution"][-1]["Checksum"]


# --- 4. storage tiers ---------------------------------------------------------------------------


def test_storage_tier_after_31_days(make_server, corpus):
    """Import, restart the same data dir with the service clock moved ahead: just under 30 days
    still FREQUENT_ACCESS, 30 days and more ARCHIVE_INSTANT_ACCESS (GetImageSet and search are no
    touch); GetImageFrame and GetImageSetMetadata touch image sets back to FREQUENT_ACCESS, at most
    one recorded touch a minute."""
    server = make_server()
    client = server.client()
    ds = make_datastore(server, "tiers")
    placed, _ = boto3_import(server, ds, "tiers", {n: corpus / n for n in ("CT_small.dcm", "MR_small.dcm",
                                                                                  "emri_small.dcm")}, "t")
    ct, mr, emri = (placed[n]["imageSetId"] for n in ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm"))
    before = {}
    wall = datetime.datetime.now(UTC)
    for image_set in (ct, mr, emri):
        got = client.get_image_set(datastoreId=ds, imageSetId=image_set)
        assert got["storageTier"] == "FREQUENT_ACCESS"
        assert abs((utc(got["lastAccessedAt"]) - wall).total_seconds()) < 600
        before[image_set] = got["lastAccessedAt"]
    summaries = client.search_image_sets(datastoreId=ds)["imageSetsMetadataSummaries"]
    assert {s["storageTier"] for s in summaries} == {"FREQUENT_ACCESS"} and len(summaries) == 3
    # A touch within a minute of the import's is not recorded.
    ct_frame = next(iter(instances_of(metadata(client, ds, ct)).values()))["ImageFrames"][0]["ID"]
    client.get_image_frame(datastoreId=ds, imageSetId=ct, imageFrameInformation={"imageFrameId": ct_frame})
    assert client.get_image_set(datastoreId=ds, imageSetId=ct)["lastAccessedAt"] == before[ct]

    def restart(offset):
        assert server.stop() == 0
        server.extra_args = ["--clock-offset-secs", str(offset)]
        server.start()
        return server.client()

    def tiers(c):
        return {s["imageSetId"]: s["storageTier"] for s in c.search_image_sets(datastoreId=ds)["imageSetsMetadataSummaries"]}

    # A search token survives a restart.
    token = client.search_image_sets(datastoreId=ds, maxResults=2)["nextToken"]
    # Just under 30 days: still frequent access.
    client = restart(30 * 86400 - 300)
    rest = client.search_image_sets(datastoreId=ds, maxResults=2, nextToken=token)
    assert len(rest["imageSetsMetadataSummaries"]) == 1 and "nextToken" not in rest
    for image_set in (ct, mr, emri):
        got = client.get_image_set(datastoreId=ds, imageSetId=image_set)
        assert got["storageTier"] == "FREQUENT_ACCESS" and got["lastAccessedAt"] == before[image_set]
    assert set(tiers(client).values()) == {"FREQUENT_ACCESS"}
    # 30 days and more: archive instant access, in GetImageSet and in search (neither touches).
    for offset in (30 * 86400 + 120, ARCHIVE_OFFSET):
        client = restart(offset)
        for image_set in (ct, mr, emri):
            got = client.get_image_set(datastoreId=ds, imageSetId=image_set)
            assert got["storageTier"] == "ARCHIVE_INSTANT_ACCESS", (offset, image_set)
            assert got["lastAccessedAt"] == before[image_set]
        assert tiers(client) == {i: "ARCHIVE_INSTANT_ACCESS" for i in (ct, mr, emri)}
        assert tiers(client) == {i: "ARCHIVE_INSTANT_ACCESS" for i in (ct, mr, emri)}, "search is no touch"

    # GetImageFrame touches the CT image set: lastAccessedAt moves to the service's "now".
    assert client.get_image_frame(datastoreId=ds, imageSetId=ct,
                                  imageFrameInformation={"imageFrameId": ct_frame})["imageFrameBlob"].read()
    got = client.get_image_set(datastoreId=ds, imageSetId=ct)
    assert got["storageTier"] == "FREQUENT_ACCESS"
    moved = (utc(got["lastAccessedAt"]) - utc(before[ct])).total_seconds()
    assert ARCHIVE_OFFSET - 600 < moved < ARCHIVE_OFFSET + 3600, moved
    # A second touch within the minute is not recorded.
    client.get_image_frame(datastoreId=ds, imageSetId=ct, imageFrameInformation={"imageFrameId": ct_frame})
    assert client.get_image_set(datastoreId=ds, imageSetId=ct)["lastAccessedAt"] == got["lastAccessedAt"]
    # GetImageSetMetadata touches the MR image set; the multi-frame one stays archived.
    metadata(client, ds, mr)
    assert client.get_image_set(datastoreId=ds, imageSetId=mr)["storageTier"] == "FREQUENT_ACCESS"
    assert client.get_image_set(datastoreId=ds, imageSetId=emri)["storageTier"] == "ARCHIVE_INSTANT_ACCESS"
    found = {s["imageSetId"]: (s["storageTier"], s["lastAccessedAt"])
             for s in client.search_image_sets(datastoreId=ds)["imageSetsMetadataSummaries"]}
    assert found[ct] == ("FREQUENT_ACCESS", got["lastAccessedAt"])
    assert found[mr][0] == "FREQUENT_ACCESS" and found[emri] == ("ARCHIVE_INSTANT_ACCESS", before[emri])
    # The touches are on disk: a restart with the same offset keeps them.
    client = restart(ARCHIVE_OFFSET)
    assert client.get_image_set(datastoreId=ds, imageSetId=ct)["storageTier"] == "FREQUENT_ACCESS"
    assert client.get_image_set(datastoreId=ds, imageSetId=emri)["storageTier"] == "ARCHIVE_INSTANT_ACCESS"
    assert tiers(client) == {ct: "FREQUENT_ACCESS", mr: "FREQUENT_ACCESS", emri: "ARCHIVE_INSTANT_ACCESS"}


# --- 5. CORS ------------------------------------------------------------------------------------


EXPOSED = {"x-amzn-requestid", "x-amzn-errortype", "x-amz-request-id", "content-encoding", "content-length",
           "content-type"}


def raw_request(server, method, path, headers=None, body=b""):
    u = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def signed_request(server, method, path, body=b"", headers=None):
    url = server.url + path
    req = AWSRequest(method=method, url=url, data=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
    SigV4Auth(Credentials("test", "test"), "medical-imaging", "us-east-1").add_auth(req)
    return raw_request(server, method, path, dict(req.headers.items()), body)


def check_cors_response(headers):
    assert headers.get("access-control-allow-origin") == "*", headers
    exposed = {h.strip().lower() for h in headers.get("access-control-expose-headers", "").split(",") if h.strip()}
    assert EXPOSED <= exposed, exposed


def test_cors(srv, store):
    ds = store["ds"]
    ct = store["corpus_sets"]["CT_small.dcm"]
    base = f"/datastore/{ds}/imageSet/{ct}"
    for path in (f"{base}/getImageSet", f"{base}/getImageFrame", f"/datastore/{ds}/searchImageSets",
                 "/datastore", "/no/such/path"):
        status, headers, body = raw_request(srv, "OPTIONS", path, {
            "Origin": "http://viewer.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,x-amz-date,content-type",
        })
        assert status == 204, (path, status, body)
        assert headers.get("access-control-allow-origin") == "*", (path, headers)
        methods = {m.strip() for m in headers.get("access-control-allow-methods", "").split(",")}
        assert {"GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"} <= methods, methods
        allowed = {h.strip().lower() for h in headers.get("access-control-allow-headers", "").split(",")}
        assert {"authorization", "x-amz-date", "content-type"} <= allowed, headers
        assert headers.get("access-control-max-age") == "86400", headers
    # What aws-sdk-js v3 asks for: echoed in full.
    js = "amz-sdk-invocation-id,amz-sdk-request,authorization,content-type,x-amz-content-sha256,x-amz-date,x-amz-user-agent"
    status, headers, _ = raw_request(srv, "OPTIONS", f"{base}/getImageFrame", {
        "Origin": "https://viewer.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": js})
    assert status == 204
    assert {h.strip() for h in headers["access-control-allow-headers"].lower().split(",")} == set(js.split(","))

    # Signed requests (what a browser sends after the preflight) carry the CORS headers.
    status, headers, body = signed_request(srv, "POST", f"{base}/getImageSet", headers={"Origin": "http://viewer.example"})
    assert status == 200, body
    check_cors_response(headers)
    assert json.loads(body)["imageSetId"] == ct
    status, headers, body = signed_request(srv, "POST", f"{base}/getImageSetMetadata")
    assert status == 200
    check_cors_response(headers)
    assert headers["content-type"] == "application/json" and headers["content-encoding"] == "gzip"
    assert gunzip_json(body)["ImageSetID"] == ct
    frame_id = next(iter(instances_of(gunzip_json(body)).values()))["ImageFrames"][0]["ID"]
    status, headers, body = signed_request(srv, "POST", f"{base}/getImageFrame",
                                           body=json.dumps({"imageFrameId": frame_id}).encode())
    assert status == 200 and headers["content-type"] == "image/jph"
    assert int(headers["content-length"]) == len(body)
    check_cors_response(headers)
    # Errors too: not found, validation, unsigned.
    status, headers, body = signed_request(srv, "POST", f"/datastore/{ds}/imageSet/{'0' * 32}/getImageSet")
    assert status == 404 and headers.get("x-amzn-errortype", "").startswith("ResourceNotFoundException")
    check_cors_response(headers)
    status, headers, body = signed_request(srv, "POST", f"/datastore/{ds}/searchImageSets",
                                           body=b'{"filters":[{"operator":"LIKE","values":[{"DICOMPatientId":"a"}]}]}')
    assert status == 400
    check_cors_response(headers)
    status, headers, body = raw_request(srv, "POST", f"{base}/getImageSet", {"Origin": "http://viewer.example"})
    assert status == 403
    check_cors_response(headers)

    # boto3 sees them in every response's headers.
    client = srv.client()
    resp = client.get_image_set(datastoreId=ds, imageSetId=ct)
    check_cors_response(resp["ResponseMetadata"]["HTTPHeaders"])
    seen = []
    client.meta.events.register("after-call.medical-imaging.SearchImageSets",
                                lambda http_response, **kw: seen.append(http_response.headers))
    client.search_image_sets(datastoreId=ds, maxResults=1)
    assert len(seen) == 1 and seen[0].get("access-control-allow-origin") == "*"
    assert "x-amzn-RequestId".lower() in seen[0].get("access-control-expose-headers", "").lower()


@pytest.mark.skipif(os.environ.get("LIGHTBOX_TEST_BACKEND", "embedded") != "postgres-s3",
                    reason="nodes share a catalog on PostgreSQL + S3 only")
def test_second_node_serves_the_same_reads(srv, store, tmp_path):
    """A second node on the same PostgreSQL catalog and S3 bucket: same search pages (a token from
    one node continues on the other), same metadata bytes, same frames."""
    other = Lightbox(srv.data_dir, tmp_path).start()
    try:
        a, b = srv.client(), other.client()
        ds = store["ds"]
        first = a.search_image_sets(datastoreId=ds, maxResults=5)
        rest = b.search_image_sets(datastoreId=ds, maxResults=50, nextToken=first["nextToken"])
        assert [s["imageSetId"] for s in first["imageSetsMetadataSummaries"] + rest["imageSetsMetadataSummaries"]] == \
            [s["imageSetId"] for s in a.search_image_sets(datastoreId=ds)["imageSetsMetadataSummaries"]]
        image_set = store["corpus_sets"]["emri_small.dcm"]
        raw_a = a.get_image_set_metadata(datastoreId=ds, imageSetId=image_set)["imageSetMetadataBlob"].read()
        raw_b = b.get_image_set_metadata(datastoreId=ds, imageSetId=image_set)["imageSetMetadataBlob"].read()
        assert raw_a == raw_b
        for entry in next(iter(instances_of(gunzip_json(raw_a)).values()))["ImageFrames"]:
            info = {"imageFrameId": entry["ID"]}
            fa = a.get_image_frame(datastoreId=ds, imageSetId=image_set, imageFrameInformation=info)["imageFrameBlob"].read()
            fb = b.get_image_frame(datastoreId=ds, imageSetId=image_set, imageFrameInformation=info)["imageFrameBlob"].read()
            assert fa == fb and len(fa) == entry["FrameSizeInBytes"]
        assert a.get_image_set(datastoreId=ds, imageSetId=image_set)["imageSetArn"] == \
            b.get_image_set(datastoreId=ds, imageSetId=image_set)["imageSetArn"]
    finally:
        other.kill()


def test_server_logs_carry_no_patient_data(srv, store, versioned):
    """After everything above (imports, searches by patient id, date, UID, failed searches), the
    shared server's log holds no patient or study value."""
    log = "".join(p.read_text(errors="replace") for p in sorted(srv.log_dir.glob(f"lightbox-{srv.port}-*.stderr")))
    assert "SearchImageSets" in log or "searchImageSets" in log, "the requests are logged"
    secrets = {"1CT1", "SECRET-PID", "19qz0101"}
    for ser in store["series"]:
        src = ser["src"]
        secrets |= {ser["patient_id"], ser["conflicting_patient_id"], str(src.PatientName), str(src.AccessionNumber)}
    for value in secrets:
        assert value not in log, "a patient value is in the server log"
