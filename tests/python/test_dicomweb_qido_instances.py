"""QIDO-RS at the instance level (SearchDICOMInstances: `/studies/{s}/series/{se}/instances`,
`/studies/{s}/instances`, `/instances`) and the study / series attributes added with it
(ReferringPhysicianName, SeriesDescription, SeriesDate / SeriesTime), through `dicomweb-client`
— a client we did not write — on a SigV4-signed `requests.Session`, and raw signed requests
where the library cannot say something. The contract is docs/compatibility.md, "DICOMweb",
bullets "QIDO-RS" and "Upgrading". Every expected value comes from the source files (pydicom),
never from the server's own answers; `includefield=all` is compared with WADO-RS instance
metadata of the same instance.

One module-scoped server and data store, made by two import jobs of corpus files edited with
pydicom: an MR study of two series (the first with InstanceNumbers 1, 2, 2, 3 — one instance
with a private binary value over 1 MiB — and one instance without; the second imported later, so
that it is the study's newest series), a 10-frame MR, a CT with a conflicting instance (another
PatientID: a non-primary image set) and a CT study the update / delete test changes. The tests
near the end change the data store in file order (an update reordering the MR study, a STOW-RS,
an update and a delete); the backfill test (last: it restarts the server) simulates a catalog
written before the instance index existed. Runs on both backends
(LIGHTBOX_TEST_BACKEND=embedded | postgres-s3)."""

import json
import shutil
import sqlite3
import subprocess
import time

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

import conftest
from conftest import module_server, signed_session
from test_image_set_changes import fresh_copy, update, wait_unlocked
from test_image_set_reads import boto3_import
from test_import import make_datastore

ROOT = "1.2.826.0.1.3680043.10.1507.88"
DICOM_JSON = "application/dicom+json"

# Instance objects: PS3.18 Table 6.7.1-2b's attributes (with the study and series UIDs).
INSTANCE_TAGS = {
    "00080016": "UI", "00080018": "UI", "00200013": "IS", "00280010": "US", "00280011": "US",
    "00280100": "US", "00280008": "IS", "0020000D": "UI", "0020000E": "UI",
}
# Series attributes (Table 6.7.1-2a) added at `/studies/{s}/instances` and `/instances`.
SERIES_TAGS = {"00080060": "CS", "0008103E": "LO", "00200011": "IS"}
# Study attributes (Table 6.7.1-2) added at `/instances`.
STUDY_TAGS = {
    "00080020": "DA", "00080030": "TM", "00080050": "SH", "00080090": "PN", "00100010": "PN",
    "00100020": "LO", "00100030": "DA", "00100040": "CS", "00200010": "SH",
}
# A private OB value over 1 MiB (a BulkDataURI in instance metadata).
BULK = bytes((i * 7 + 3) % 251 for i in range(1024 * 1024 + 100))


def uid(*parts):
    return ".".join([ROOT, *map(str, parts)])


# --- module fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory, module_aws_env):
    server = module_server(tmp_path_factory, "qido-instances-server")
    yield server
    server.kill()


def edited(corpus, out, source, name, bulk=None, **changes):
    """A copy of a corpus file with attributes changed (None deletes one) and, with `bulk`, a
    private OB value of those bytes; its path."""
    d = pydicom.dcmread(corpus / source)
    if bulk is not None:
        d.private_block(0x0009, "LIGHTBOX QIDO TEST", create=True).add_new(0x01, "OB", bulk)
    for keyword, v in changes.items():
        if v is None:
            if keyword in d:
                delattr(d, keyword)
        else:
            setattr(d, keyword, v)
    if "SOPInstanceUID" in changes:
        d.file_meta.MediaStorageSOPInstanceUID = changes["SOPInstanceUID"]
    path = out / name
    d.save_as(path)
    return path


@pytest.fixture(scope="module")
def store(srv, corpus, tmp_path_factory):
    """Job 1: study M series 1 (MR_small and four edited copies), study E (emri_small, 10
    frames), study C (CT_small, plus a conflicting instance: non-primary), study X (three CT
    copies; changed by the update / delete test). Job 2: study M series 2 (newer)."""
    root = tmp_path_factory.mktemp("qido-instances-store")
    ds = make_datastore(srv, "qido-instances")
    job1, job2 = root / "job1", root / "job2"
    job1.mkdir()
    job2.mkdir()
    mr = pydicom.dcmread(corpus / "MR_small.dcm", stop_before_pixels=True)
    m_study, m1 = str(mr.StudyInstanceUID), str(mr.SeriesInstanceUID)
    m_common = dict(ReferringPhysicianName="Watson^John^H", SeriesDescription="Axial T1 brain",
                    SeriesDate="20040826", SeriesTime="185059")
    files1 = {
        "m1-in1.dcm": edited(corpus, job1, "MR_small.dcm", "m1-in1.dcm", **m_common),
        # With a binary value over 1 MiB (a BulkDataURI in metadata and includefield=all).
        "m1-in3.dcm": edited(corpus, job1, "MR_small.dcm", "m1-in3.dcm", SOPInstanceUID=uid(1, 3),
                             InstanceNumber="3", bulk=BULK, **m_common),
        # Two instances numbered 2: ordered by SOPInstanceUID (".10" before ".9").
        "m1-in2-9.dcm": edited(corpus, job1, "MR_small.dcm", "m1-in2-9.dcm", SOPInstanceUID=uid(1, 2, 9),
                               InstanceNumber="2", **m_common),
        "m1-in2-10.dcm": edited(corpus, job1, "MR_small.dcm", "m1-in2-10.dcm", SOPInstanceUID=uid(1, 2, 10),
                                InstanceNumber="2", **m_common),
        # No InstanceNumber: last.
        "m1-none.dcm": edited(corpus, job1, "MR_small.dcm", "m1-none.dcm", SOPInstanceUID=uid(1, 0),
                              InstanceNumber=None, **m_common),
        "e.dcm": edited(corpus, job1, "emri_small.dcm", "e.dcm", ReferringPhysicianName="Holmes^Sherlock",
                        SeriesDescription="EMRI multiframe"),
        "c.dcm": edited(corpus, job1, "CT_small.dcm", "c.dcm", ReferringPhysicianName="Hudson^Martha",
                        SeriesDescription="CT chest"),
        # Same series, another PatientID: a non-primary image set, never in QIDO results.
        "cz-conflict.dcm": edited(corpus, job1, "CT_small.dcm", "cz-conflict.dcm", SOPInstanceUID=uid(3, 1),
                                 PatientID="QIDO-I-CONFLICT", ReferringPhysicianName="Hudson^Martha",
                                 SeriesDescription="CT chest"),
    }
    for i in (1, 2, 3):
        files1[f"x-{i}.dcm"] = edited(
            corpus, job1, "CT_small.dcm", f"x-{i}.dcm", StudyInstanceUID=uid(9), SeriesInstanceUID=uid(9, 1),
            SOPInstanceUID=uid(9, 1, i), InstanceNumber=str(i), ReferringPhysicianName="Lestrade^G",
            SeriesDescription="Mutable", AccessionNumber="QIDO-I-X")
    placed, _ = boto3_import(srv, ds, "qido-instances", files1, "job1")
    m2_common = dict(SeriesInstanceUID=uid(2), SeriesNumber="2", SeriesDescription="Coronal T2",
                     SeriesDate="20040827", SeriesTime="090000", ReferringPhysicianName="Watson^John^H")
    files2 = {
        "m2-a.dcm": edited(corpus, job2, "MR_small.dcm", "m2-a.dcm", SOPInstanceUID=uid(2, 1), InstanceNumber="2",
                           **m2_common),
        "m2-b.dcm": edited(corpus, job2, "MR_small.dcm", "m2-b.dcm", SOPInstanceUID=uid(2, 2), InstanceNumber="1",
                           **m2_common),
    }
    placed2, _ = boto3_import(srv, ds, "qido-instances", files2, "job2")
    placed.update(placed2)
    primary = {k for k, r in placed.items() if r.get("isPrimary", True)}
    assert set(placed) - primary == {"cz-conflict.dcm"}, placed
    files = {**files1, **files2}
    # Sources of the primary image sets' instances, by SOP Instance UID.
    sources = {}
    for name in sorted(primary):
        d = pydicom.dcmread(files[name], stop_before_pixels=True)
        sources[str(d.SOPInstanceUID)] = {"name": name, "path": files[name], "ds": d, "json": d.to_json_dict(),
                                          "study": str(d.StudyInstanceUID), "series": str(d.SeriesInstanceUID),
                                          "image_set": placed[name]["imageSetId"]}
    conflict = pydicom.dcmread(files["cz-conflict.dcm"], stop_before_pixels=True)
    return {"ds": ds, "base": f"{srv.url}/datastore/{ds}", "sources": sources, "files": files,
            "placed": placed, "m_study": m_study, "m1": m1, "m2": uid(2),
            "c_study": str(conflict.StudyInstanceUID), "c_series": str(conflict.SeriesInstanceUID),
            "conflict_sop": str(conflict.SOPInstanceUID),
            "e_sop": str(pydicom.dcmread(files["e.dcm"], stop_before_pixels=True).SOPInstanceUID)}


@pytest.fixture(scope="module")
def session():
    return signed_session()


@pytest.fixture(scope="module")
def client(store, session):
    return DICOMwebClient(url=store["base"], session=session)


# --- helpers ------------------------------------------------------------------------------------


def value(obj, tag):
    v = obj.get(tag, {}).get("Value")
    return v[0] if v else None


def sops(results):
    return [value(r, "00080018") for r in results]


def order_key(src):
    """InstanceNumber ascending, missing last, ties by SOPInstanceUID (byte order)."""
    n = src["ds"].get("InstanceNumber")
    n = None if n is None or str(n).strip() == "" else int(n)
    return (n is None, n or 0, str(src["ds"].SOPInstanceUID))


def expected(store, pred=lambda s: True):
    """SOP Instance UIDs of the live primary instances matching `pred`, in instance order."""
    chosen = [s for s in store["sources"].values() if pred(s)]
    return [str(s["ds"].SOPInstanceUID) for s in sorted(chosen, key=order_key)]


def src_of(store, sop):
    return store["sources"][sop]


def want_element(src, tag, vr):
    """The source's DICOM JSON element (pydicom), or the empty element if it has none."""
    el = src["json"].get(tag)
    if el is None or "Value" not in el:
        return {"vr": vr}
    assert el["vr"] == vr, (tag, el)
    return el


def check_element(got, src, tag, vr, where):
    assert tag in got, f"{where}: {tag} missing in {sorted(got)}"
    el = got[tag]
    assert el.get("vr") == vr, (where, tag, el)
    want = want_element(src, tag, vr)
    assert el.get("Value") == want.get("Value"), (where, tag, el, want)


def check_instance(got, store, level, where, included=False):
    """Every attribute of an instance object against pydicom: Table 6.7.1-2b's, then the series
    ones (`/studies/{s}/instances`, `/instances`) and the study ones (`/instances`); without
    `included` (an includefield asking for more), no study or series attribute beyond them."""
    sop = value(got, "00080018")
    assert sop in store["sources"], (where, sop)
    src = src_of(store, sop)
    for tag, vr in INSTANCE_TAGS.items():
        check_element(got, src, tag, vr, f"{where} {src['name']}")
    assert got["00080056"] == {"vr": "CS", "Value": ["ONLINE"]}, (where, got.get("00080056"))
    url = f"{store['base']}/studies/{src['study']}/series/{src['series']}/instances/{sop}"
    assert got["00081190"] == {"vr": "UR", "Value": [url]}, (where, got.get("00081190"))
    assert "7FE00010" not in got, where
    if level in ("study", "all"):
        for tag, vr in SERIES_TAGS.items():
            check_element(got, src, tag, vr, f"{where} {src['name']}")
    elif not included:
        assert "00080060" not in got and "0008103E" not in got, (where, sorted(got))
    if level == "all":
        for tag, vr in STUDY_TAGS.items():
            check_element(got, src, tag, vr, f"{where} {src['name']}")
    elif not included:
        assert "00100010" not in got and "00080090" not in got, (where, sorted(got))
    return sop


def raw(session, store, path, query="", accept=DICOM_JSON):
    return session.get(f"{store['base']}{path}" + (f"?{query}" if query else ""), headers={"Accept": accept})


def series_of(store):
    """{series uid: a source of it}."""
    out = {}
    for s in store["sources"].values():
        out.setdefault(s["series"], s)
    return out


def studies_of(store):
    out = {}
    for s in store["sources"].values():
        out.setdefault(s["study"], s)
    return out


def attr(src, keyword):
    v = src["ds"].get(keyword)
    return "" if v is None else str(v)


# --- the three levels ---------------------------------------------------------------------------


def test_series_level(store, client, session):
    for series, one in series_of(store).items():
        got = client.search_for_instances(one["study"], series)
        want = expected(store, lambda s: s["series"] == series)
        assert sops(got) == want, series
        for obj in got:
            check_instance(obj, store, "series", f"series {series}")
    # The MR series: 1, the two 2s by SOPInstanceUID (".10" before ".9"), 3, then the one without.
    m1 = client.search_for_instances(store["m_study"], store["m1"])
    first = str(pydicom.dcmread(store["files"]["m1-in1.dcm"], stop_before_pixels=True).SOPInstanceUID)
    assert sops(m1) == [first, uid(1, 2, 10), uid(1, 2, 9), uid(1, 3), uid(1, 0)]
    assert m1[-1]["00200013"] == {"vr": "IS"}
    # The multi-frame instance.
    (e,) = [o for o in client.search_for_instances() if value(o, "00080018") == store["e_sop"]]
    assert e["00280008"] == {"vr": "IS", "Value": [10]}
    # The non-primary image set's instance is not in its series.
    c = client.search_for_instances(store["c_study"], store["c_series"])
    assert store["conflict_sop"] not in sops(c) and len(c) == 1
    # Unknown study or series: no match.
    assert client.search_for_instances(store["m_study"], uid(404)) == []
    assert client.search_for_instances(uid(404), store["m1"]) == []
    # A series asked under another study: no match.
    assert client.search_for_instances(store["c_study"], store["m1"]) == []
    # No match is `200 []`.
    r = raw(session, store, f"/studies/{store['m_study']}/series/{uid(404)}/instances")
    assert (r.status_code, r.headers["Content-Type"], r.json()) == (200, DICOM_JSON, [])


def test_study_level(store, client):
    for study in studies_of(store):
        if study == store["m_study"]:
            continue
        got = client.search_for_instances(study)
        assert sops(got) == expected(store, lambda s: s["study"] == study), study
        for obj in got:
            check_instance(obj, store, "study", f"study {study}")
    # Study M: its newest series (job 2) first, each series by InstanceNumber.
    got = client.search_for_instances(store["m_study"])
    want = expected(store, lambda s: s["series"] == store["m2"]) + expected(store, lambda s: s["series"] == store["m1"])
    assert sops(got) == want
    assert sops(got)[:2] == [uid(2, 2), uid(2, 1)]
    for obj in got:
        check_instance(obj, store, "study", "study M")
    assert client.search_for_instances(uid(404)) == []


def test_data_store_level(store, client, session):
    got = client.search_for_instances()
    assert sops(got) == expected(store)
    assert store["conflict_sop"] not in sops(got)
    for obj in got:
        check_instance(obj, store, "all", "/instances")
    # The raw response: application/dicom+json, a JSON array.
    r = raw(session, store, "/instances")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == DICOM_JSON
    assert sops(r.json()) == expected(store)


def test_parent_query_attributes_at_instance_level(store, client):
    """PS3.18 §10.6.3.3.3: `/instances` returns the study level's result attributes (Table
    6.7.1-2: with ModalitiesInStudy and the two counts, as study objects carry them) and
    `/studies/{s}/instances` and `/instances` the series level's (Table 6.7.1-2a: with
    NumberOfSeriesRelatedInstances, as series objects carry it)."""
    sources = store["sources"].values()

    def study_counts(study):
        mine = [s for s in sources if s["study"] == study]
        return ({str(s["ds"].Modality) for s in mine}, len({s["series"] for s in mine}), len(mine))

    def series_count(series):
        return len([s for s in sources if s["series"] == series])

    missing = set()
    for obj in client.search_for_instances():
        src = src_of(store, value(obj, "00080018"))
        modalities, n_series, n_instances = study_counts(src["study"])
        for tag, want in (("00080061", modalities), ("00201206", n_series), ("00201208", n_instances),
                          ("00201209", series_count(src["series"]))):
            if tag not in obj:
                missing.add(("/instances", tag))
                continue
            el = obj[tag]
            assert el["vr"] == ("CS" if tag == "00080061" else "IS"), (tag, el)
            got = set(el.get("Value", [])) if tag == "00080061" else el.get("Value")
            assert got == (want if tag == "00080061" else [want]), (src["name"], tag, el, want)
    for obj in client.search_for_instances(store["m_study"]):
        src = src_of(store, value(obj, "00080018"))
        if "00201209" not in obj:
            missing.add(("/studies/{s}/instances", "00201209"))
            continue
        assert obj["00201209"] == {"vr": "IS", "Value": [series_count(src["series"])]}, (src["name"], obj["00201209"])
    assert not missing, sorted(missing)


# --- matching -----------------------------------------------------------------------------------


def test_instance_keys(store, client):
    ct_class = str(src_of(store, expected(store, lambda s: s["name"] == "c.dcm")[0])["ds"].SOPClassUID)
    mr_class = "1.2.840.10008.5.1.4.1.1.4"
    cases = [
        ({"SOPInstanceUID": uid(1, 3)}, lambda s: s["name"] == "m1-in3.dcm"),
        ({"00080018": f"{uid(1, 3)},{uid(2, 1)},{uid(404)}"}, lambda s: s["name"] in ("m1-in3.dcm", "m2-a.dcm")),
        ({"SOPInstanceUID": f"{uid(1, 0)}\\{uid(2, 2)}"}, lambda s: s["name"] in ("m1-none.dcm", "m2-b.dcm")),
        # The non-primary image set's instance is not found even by its UID.
        ({"SOPInstanceUID": store["conflict_sop"]}, lambda s: False),
        ({"SOPClassUID": ct_class}, lambda s: str(s["ds"].SOPClassUID) == ct_class),
        ({"00080016": f"{mr_class},{ct_class}"}, lambda s: str(s["ds"].SOPClassUID) in (mr_class, ct_class)),
        ({"InstanceNumber": "2"}, lambda s: str(s["ds"].get("InstanceNumber", "")).strip() == "2"),
        ({"00200013": "3"}, lambda s: str(s["ds"].get("InstanceNumber", "")).strip() == "3"),
        ({"InstanceNumber": "2,3"}, lambda s: str(s["ds"].get("InstanceNumber", "")).strip() in ("2", "3")),
        ({"InstanceNumber": "3\\404"}, lambda s: str(s["ds"].get("InstanceNumber", "")).strip() == "3"),
        ({"InstanceNumber": "404"}, lambda s: False),
        # Combined with relational keys.
        ({"InstanceNumber": "1", "Modality": "MR"},
         lambda s: str(s["ds"].get("InstanceNumber", "")).strip() == "1" and s["ds"].Modality == "MR"),
        ({"SOPClassUID": mr_class, "SeriesInstanceUID": store["m2"]}, lambda s: s["series"] == store["m2"]),
    ]
    for filters, pred in cases:
        want = expected(store, pred)
        assert sops(client.search_for_instances(search_filters=filters)) == want, filters
    # At the series and study levels the instance keys narrow that series / study.
    got = client.search_for_instances(store["m_study"], store["m1"], search_filters={"InstanceNumber": "2"})
    assert sops(got) == [uid(1, 2, 10), uid(1, 2, 9)]
    got = client.search_for_instances(store["m_study"], search_filters={"InstanceNumber": "2"})
    assert sops(got) == [uid(2, 1), uid(1, 2, 10), uid(1, 2, 9)]
    got = client.search_for_instances(store["m_study"], search_filters={"SOPInstanceUID": store["e_sop"]})
    assert got == []


def test_relational_study_and_series_keys_at_instances(store, client):
    m = lambda s: s["study"] == store["m_study"]  # noqa: E731
    ct = src_of(store, expected(store, lambda s: s["name"] == "c.dcm")[0])
    cases = [
        ({"StudyInstanceUID": store["m_study"]}, m),
        ({"PatientName": str(ct["ds"].PatientName)}, lambda s: str(s["ds"].PatientName) == str(ct["ds"].PatientName)),
        ({"PatientName": "CompressedSamples^MR*"}, m),
        ({"PatientID": str(ct["ds"].PatientID)}, lambda s: str(s["ds"].PatientID) == str(ct["ds"].PatientID)),
        ({"StudyDate": "20040101-20041231"}, lambda s: attr(s, "StudyDate").startswith("2004")),
        ({"AccessionNumber": "QIDO-I-X"}, lambda s: s["study"] == uid(9)),
        ({"ModalitiesInStudy": "CT"}, lambda s: s["ds"].Modality == "CT"),
        ({"ReferringPhysicianName": "Watson^John^H"}, m),
        ({"ReferringPhysicianName": "H*"}, lambda s: attr(s, "ReferringPhysicianName")[:1] == "H"),
        ({"Modality": "MR"}, lambda s: s["ds"].Modality == "MR"),
        ({"SeriesInstanceUID": f"{store['m2']},{store['c_series']}"},
         lambda s: s["series"] in (store["m2"], store["c_series"])),
        ({"SeriesNumber": "2"}, lambda s: s["series"] == store["m2"]),
        ({"SeriesDescription": "* T?*"}, lambda s: s["study"] == store["m_study"]),
        ({"SeriesDescription": "Axial*"}, lambda s: s["series"] == store["m1"]),
        ({"SeriesDate": "20040827-"}, lambda s: s["series"] == store["m2"]),
        ({"SeriesDate": "-20001231"}, lambda s: attr(s, "SeriesDate") and attr(s, "SeriesDate") <= "20001231"),
        ({"BodyPartExamined": "HEAD"}, lambda s: attr(s, "BodyPartExamined") == "HEAD"),
        ({"Modality": "MR", "SeriesNumber": "1", "InstanceNumber": "2"},
         lambda s: s["series"] == store["m1"] and attr(s, "InstanceNumber").strip() == "2"),
    ]
    for filters, pred in cases:
        want = expected(store, pred)
        assert want, filters
        got = client.search_for_instances(search_filters=filters)
        assert sops(got) == want, filters
    # Fuzzy matching applies to PN keys at the instance level too.
    got = client.search_for_instances(fuzzymatching=True, search_filters={"ReferringPhysicianName": "sher"})
    assert sops(got) == expected(store, lambda s: s["name"] == "e.dcm")
    # Series keys at `/studies/{s}/instances`.
    got = client.search_for_instances(store["m_study"], search_filters={"SeriesDescription": "Coronal*"})
    assert sops(got) == [uid(2, 2), uid(2, 1)]


# --- the new study and series keys and attributes -------------------------------------------------


def study_uids(results):
    return sorted(value(r, "0020000D") for r in results)


def test_study_referring_physician(store, client):
    studies = client.search_for_studies()
    want = studies_of(store)
    assert study_uids(studies) == sorted(want)
    for st in studies:
        src = want[value(st, "0020000D")]
        check_element(st, src, "00080090", "PN", "study")
        check_element(st, src, "00081030", "LO", "study")
    by_name = lambda p: sorted(u for u, s in want.items() if p(attr(s, "ReferringPhysicianName")))  # noqa: E731
    for filters, fuzzy, pred in [
        ({"ReferringPhysicianName": "Watson^John^H"}, False, lambda n: n == "Watson^John^H"),
        ({"00080090": "Holmes^Sherlock"}, False, lambda n: n == "Holmes^Sherlock"),
        ({"ReferringPhysicianName": "watson^john^h"}, False, lambda n: False),
        ({"ReferringPhysicianName": "H*"}, False, lambda n: n.startswith("H")),
        ({"ReferringPhysicianName": "*o?n*"}, False, lambda n: "Watson^John" in n),
        ({"ReferringPhysicianName": "Hudson"}, False, lambda n: False),
        # Fuzzy: case-insensitive prefix of any name component.
        ({"ReferringPhysicianName": "watson"}, True, lambda n: n.startswith("Watson")),
        ({"ReferringPhysicianName": "JO"}, True, lambda n: n == "Watson^John^H"),
        ({"ReferringPhysicianName": "mar"}, True, lambda n: n == "Hudson^Martha"),
        ({"ReferringPhysicianName": "h"}, True, lambda n: n in ("Watson^John^H", "Holmes^Sherlock", "Hudson^Martha")),
        ({"ReferringPhysicianName": "olmes"}, True, lambda n: False),
    ]:
        got = client.search_for_studies(fuzzymatching=fuzzy, search_filters=filters)
        assert study_uids(got) == by_name(pred), (filters, fuzzy)
    # A series search takes study keys too.
    got = client.search_for_series(search_filters={"ReferringPhysicianName": "Holmes^Sherlock"})
    assert [value(s, "0020000E") for s in got] == [series for series, s in series_of(store).items()
                                                   if attr(s, "ReferringPhysicianName") == "Holmes^Sherlock"]


def test_series_description_and_date(store, client, session):
    want = series_of(store)
    results = client.search_for_series()
    assert sorted(value(s, "0020000E") for s in results) == sorted(want)
    for s in results:
        src = want[value(s, "0020000E")]
        check_element(s, src, "0008103E", "LO", "series")
        # SeriesDate / SeriesTime only when asked.
        assert "00080021" not in s and "00080031" not in s, s
    for fields in (["SeriesDate", "SeriesTime"], ["00080021", "00080031"], ["all"]):
        for s in client.search_for_series(fields=fields):
            src = want[value(s, "0020000E")]
            check_element(s, src, "00080021", "DA", f"series {fields}")
            check_element(s, src, "00080031", "TM", f"series {fields}")
            check_element(s, src, "0008103E", "LO", f"series {fields}")
    # OHIF's exact request (raw): includefield=0008103E%2C00080021.
    r = raw(session, store, f"/studies/{store['m_study']}/series", "includefield=0008103E%2C00080021")
    assert r.status_code == 200, r.text
    got = {value(s, "0020000E"): s for s in r.json()}
    assert sorted(got) == sorted([store["m1"], store["m2"]])
    assert got[store["m1"]]["0008103E"] == {"vr": "LO", "Value": ["Axial T1 brain"]}
    assert got[store["m1"]]["00080021"] == {"vr": "DA", "Value": ["20040826"]}
    assert got[store["m2"]]["0008103E"] == {"vr": "LO", "Value": ["Coronal T2"]}
    assert got[store["m2"]]["00080021"] == {"vr": "DA", "Value": ["20040827"]}

    def series_where(p):
        return sorted(u for u, s in want.items() if p(s))

    for filters, pred in [
        ({"SeriesDescription": "Axial T1 brain"}, lambda s: attr(s, "SeriesDescription") == "Axial T1 brain"),
        ({"SeriesDescription": "axial*"}, lambda s: False),
        ({"SeriesDescription": "* T?*"}, lambda s: attr(s, "SeriesDescription") in ("Axial T1 brain", "Coronal T2")),
        ({"0008103E": "C*"}, lambda s: attr(s, "SeriesDescription")[:1] == "C"),
        ({"SeriesDescription": "EMRI ?ultiframe"}, lambda s: attr(s, "SeriesDescription") == "EMRI multiframe"),
        ({"SeriesDate": "20040826"}, lambda s: attr(s, "SeriesDate") == "20040826"),
        ({"SeriesDate": "20040826-20040827"}, lambda s: "20040826" <= attr(s, "SeriesDate") <= "20040827"),
        ({"SeriesDate": "20000101-"}, lambda s: attr(s, "SeriesDate") >= "20000101"),
        ({"00080021": "-19991231"}, lambda s: "" < attr(s, "SeriesDate") <= "19991231"),
        ({"SeriesDate": "20040826-", "SeriesDescription": "Coronal*"}, lambda s: s["series"] == store["m2"]),
    ]:
        assert sorted(value(s, "0020000E") for s in client.search_for_series(search_filters=filters)) == \
            series_where(pred), filters
    # At the study level of a series search.
    got = client.search_for_series(store["m_study"], search_filters={"SeriesDate": "-20040826"})
    assert [value(s, "0020000E") for s in got] == [store["m1"]]


# --- includefield -------------------------------------------------------------------------------


def test_includefield_one_attribute(store, client):
    for field in ("00280030", "PixelSpacing"):
        got = client.search_for_instances(fields=[field])
        assert sops(got) == expected(store)
        for obj in got:
            src = src_of(store, value(obj, "00080018"))
            if "PixelSpacing" in src["ds"]:
                el = obj.get("00280030")
                assert el is not None and el["vr"] == "DS", (field, src["name"], el)
                assert [float(v) for v in el["Value"]] == pytest.approx([float(v) for v in src["ds"].PixelSpacing])
            else:
                assert "00280030" not in obj or "Value" not in obj["00280030"], (src["name"], obj["00280030"])
            # The table's attributes are still there.
            check_instance(obj, store, "all", f"includefield={field}")
    # An attribute of another level, from the document, at the series level.
    one = expected(store, lambda s: s["series"] == store["m1"])
    got = client.search_for_instances(store["m_study"], store["m1"], fields=["PatientName", "00180050"])
    assert sops(got) == one
    for obj in got:
        src = src_of(store, value(obj, "00080018"))
        check_element(obj, src, "00100010", "PN", "includefield PatientName")
        assert [float(v) for v in obj["00180050"]["Value"]] == pytest.approx([float(src["ds"].SliceThickness)])
    # An unknown tag is ignored.
    got = client.search_for_instances(store["m_study"], store["m1"], fields=["7777AAAA"])
    assert sops(got) == one and all("7777AAAA" not in o for o in got)


def test_includefield_all_is_the_instance_metadata(store, client):
    differ = {}
    bulk_uris = set()
    for level in ("series", "study", "all"):
        if level == "series":
            got = client.search_for_instances(store["m_study"], store["m1"], fields=["all"])
            want_sops = expected(store, lambda s: s["series"] == store["m1"])
        elif level == "study":
            got = client.search_for_instances(store["m_study"], fields=["all"])
            want_sops = [uid(2, 2), uid(2, 1)] + expected(store, lambda s: s["series"] == store["m1"])
        else:
            got = client.search_for_instances(fields=["all"])
            want_sops = expected(store)
        assert sops(got) == want_sops, level
        for obj in got:
            src = src_of(store, value(obj, "00080018"))
            meta = client.retrieve_instance_metadata(src["study"], src["series"], value(obj, "00080018"))
            for tag, el in meta.items():
                if tag != "7FE00010" and obj.get(tag) != el:
                    differ.setdefault(tag, []).append((level, src["name"], obj.get(tag), el))
            # Beyond the metadata: the QIDO-only attributes (availability, RetrieveURL, counts)
            # and required attributes the instance has no value for, sent empty.
            extra = {t for t in set(obj) - set(meta) if "Value" in obj[t]}
            assert extra <= {"00080056", "00081190", "00201209", "00201206", "00201208", "00080061"}, \
                (level, src["name"], sorted(extra))
            assert "7FE00010" not in obj
            check_instance(obj, store, level, f"all {level}", included=True)
            if src["name"] == "m1-in3.dcm":
                bulk = obj.get("00091001", {})
                assert bulk.get("vr") == "OB" and "InlineBinary" not in bulk and "BulkDataURI" in bulk, \
                    (level, str(bulk)[:200])
                bulk_uris.add(bulk["BulkDataURI"])
    # The value over 1 MiB is a BulkDataURI the client fetches.
    assert len(bulk_uris) == 1, bulk_uris
    assert client.retrieve_bulkdata(bulk_uris.pop()) == [BULK]
    # Every attribute of the WADO-RS metadata (GetDICOMInstanceMetadata), with its value.
    assert not differ, {tag: (len(d), d[0]) for tag, d in differ.items()}


def test_includefield_more(store, client, session):
    # Series attributes of the instance's document at `/instances`.
    got = client.search_for_instances(fields=["SeriesDate", "00080031"])
    assert sops(got) == expected(store)
    for obj in got:
        src = src_of(store, value(obj, "00080018"))
        check_element(obj, src, "00080021", "DA", "includefield SeriesDate")
        check_element(obj, src, "00080031", "TM", "includefield SeriesTime")
    # ReferringPhysicianName is a stored study attribute a series search may ask for.
    want = series_of(store)
    for s in client.search_for_series(fields=["00080090"]):
        check_element(s, want[value(s, "0020000E")], "00080090", "PN", "series includefield 00080090")
    # A sequence by keyword: as the WADO-RS metadata has it.
    c = src_of(store, expected(store, lambda s: s["name"] == "c.dcm")[0])
    assert "OtherPatientIDsSequence" in c["ds"]
    (obj,) = client.search_for_instances(c["study"], c["series"], fields=["OtherPatientIDsSequence"])
    meta = client.retrieve_instance_metadata(c["study"], c["series"], value(obj, "00080018"))
    assert obj.get("00101002") == meta["00101002"], (obj.get("00101002"), meta["00101002"])
    assert obj["00101002"]["vr"] == "SQ" and len(obj["00101002"]["Value"]) == len(c["ds"].OtherPatientIDsSequence)
    # An empty value is universal matching (PS3.18 §8.3.4.1): every instance, the attribute returned.
    r = raw(session, store, "/instances", "SOPClassUID=")
    assert r.status_code == 200, r.text
    assert sops(r.json()) == expected(store)
    for obj in r.json():
        check_element(obj, src_of(store, value(obj, "00080018")), "00080016", "UI", "SOPClassUID=")


def test_includefield_dotted_path(store, client):
    """A dotted path (PS3.18 §8.3.4.3: a sequence's attribute) at the instance level names an
    attribute the instance's document has: the sequence comes back with that attribute in each
    item (whether other item attributes come too is left open)."""
    c = src_of(store, expected(store, lambda s: s["name"] == "c.dcm")[0])
    want = [str(item.PatientID) for item in c["ds"].OtherPatientIDsSequence]
    for field in ("00101002.00100020", "OtherPatientIDsSequence.PatientID"):
        (obj,) = client.search_for_instances(c["study"], c["series"], fields=[field])
        seq = obj.get("00101002")
        assert seq is not None and seq.get("vr") == "SQ", (field, sorted(obj))
        assert [value(item, "00100020") for item in seq.get("Value", [])] == want, (field, seq)


# --- paging -------------------------------------------------------------------------------------


def test_paging(store, client):
    everything = expected(store)
    assert len(everything) >= 10
    for limit in (1, 3, 5):
        pages = []
        offset = 0
        while True:
            page = client.search_for_instances(limit=limit, offset=offset)
            assert len(page) <= limit
            if not page:
                break
            pages += sops(page)
            offset += limit
        assert pages == everything, limit
    assert sops(client.search_for_instances(offset=2, limit=3)) == everything[2:5]
    assert client.search_for_instances(offset=len(everything), limit=5) == []
    assert client.search_for_instances(offset=10_000, limit=5) == []
    # dicomweb-client's own paging.
    assert sops(client.search_for_instances(limit=4, get_remaining=True)) == everything
    # A limit beyond the maximum is capped, not refused.
    assert sops(client.search_for_instances(limit=5000)) == everything
    # Paging at the series and study levels.
    m = [uid(2, 2), uid(2, 1)] + expected(store, lambda s: s["series"] == store["m1"])
    assert sops(client.search_for_instances(store["m_study"], offset=1, limit=3)) == m[1:4]
    m1 = expected(store, lambda s: s["series"] == store["m1"])
    assert sops(client.search_for_instances(store["m_study"], store["m1"], offset=3, limit=10)) == m1[3:]
    # With a filter.
    mr = expected(store, lambda s: s["ds"].Modality == "MR")
    assert sops(client.search_for_instances(search_filters={"Modality": "MR"}, offset=1, limit=2)) == mr[1:3]


# --- errors -------------------------------------------------------------------------------------


def test_bad_requests(store, session, client):
    m = f"/studies/{store['m_study']}"
    cases = [
        ("/instances", "Zebra=QIDOSECRET", "Zebra"),
        ("/instances", "limit=0", "limit"),
        ("/instances", "limit=x", "limit"),
        ("/instances", "offset=-1", "offset"),
        ("/instances", "fuzzymatching=maybe", "fuzzymatching"),
        ("/instances", "includefield=NotAKeyword", "includefield"),
        ("/instances", "includefield=" + "%2C".join(["PixelSpacing"] * 51), "includefield"),
        ("/instances", "InstanceNumber=QIDOSECRET", "InstanceNumber"),
        ("/instances", "InstanceNumber=1.5", "InstanceNumber"),
        ("/instances", "SOPInstanceUID=QIDOSECRET", "SOPInstanceUID"),
        ("/instances", "SOPClassUID=QIDOSECRET", "SOPClassUID"),
        ("/instances", "SeriesDate=QIDOSECRET", "SeriesDate"),
        ("/instances", "SeriesNumber=QIDOSECRET", "SeriesNumber"),
        ("/instances", "StudyDate=QIDOSECRET", "StudyDate"),
        ("/instances", "PerformedProcedureStepStartDate=20200101", "PerformedProcedureStepStartDate"),
        ("/instances", "InstanceNumber=1&InstanceNumber=2", "InstanceNumber"),
        (f"{m}/instances", "Zebra=QIDOSECRET", "Zebra"),
        (f"{m}/instances", "InstanceNumber=QIDOSECRET", "InstanceNumber"),
        (f"{m}/series/{store['m1']}/instances", "SOPInstanceUID=QIDOSECRET", "SOPInstanceUID"),
        (f"{m}/series/{store['m1']}/instances", "includefield=NotAKeyword", "includefield"),
        # Keys not supported at the study / series levels.
        ("/studies", "SeriesDescription=QIDOSECRET", "SeriesDescription"),
        ("/studies", "SeriesDate=20200101", "SeriesDate"),
        ("/studies", "InstanceNumber=1", "InstanceNumber"),
        ("/studies", "SOPClassUID=1.2.3", "SOPClassUID"),
        ("/series", "SOPInstanceUID=1.2.3", "SOPInstanceUID"),
        ("/series", "InstanceNumber=1", "InstanceNumber"),
        (f"{m}/series", "SOPClassUID=1.2.3", "SOPClassUID"),
        ("/series", "SeriesDate=QIDOSECRET", "SeriesDate"),
        # Attributes that are not match keys.
        ("/series", "SeriesTime=120000", "SeriesTime"),
        ("/instances", "SeriesTime=120000", "SeriesTime"),
        ("/instances", "PixelSpacing=1", "PixelSpacing"),
        ("/studies", "ReferringPhysicianName=A&ReferringPhysicianName=B", "ReferringPhysicianName"),
    ]
    for path, query, name in cases:
        r = raw(session, store, path, query)
        assert r.status_code == 400, (path, query, r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/json"), (path, query, r.headers)
        message = r.json()["message"]
        assert name in message, (path, query, message)
        assert "QIDOSECRET" not in message, (path, query, message)
    # A malformed UID in the path.
    for path, name in [("/studies/QIDOSECRET/instances", "StudyInstanceUID"),
                       (f"{m}/series/QIDOSECRET/instances", "SeriesInstanceUID")]:
        r = raw(session, store, path)
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert "QIDOSECRET" not in r.json()["message"], path
    # Through dicomweb-client: an HTTPError carrying the 400.
    with pytest.raises(requests.HTTPError) as e:
        client.search_for_instances(search_filters={"InstanceNumber": "one"})
    assert e.value.response.status_code == 400
    # XML is not served; an unsigned request is refused; an unknown data store is 404.
    assert raw(session, store, "/instances", accept="application/dicom+xml").status_code == 406
    assert requests.get(f"{store['base']}/instances").status_code in (400, 403)
    r = session.get(store["base"].rsplit("/", 1)[0] + "/" + "0" * 32 + "/instances")
    assert r.status_code == 404, r.text


def test_no_patient_data_in_logs(srv, store, client):
    client.search_for_instances(search_filters={"ReferringPhysicianName": "Watson^John^H",
                                                "SOPInstanceUID": uid(1, 3)})
    with pytest.raises(requests.HTTPError):
        client.search_for_instances(search_filters={"InstanceNumber": "QIDOSECRET"})
    log = srv.stderr_path.read_text(errors="replace")
    assert "SearchDICOMInstances" in log
    for secret in ("Watson", "Holmes", "Hudson", "CompressedSamples", "QIDOSECRET", uid(1, 3), store["m_study"]):
        assert secret not in log, secret


# --- changes: update and delete ---------------------------------------------------------------


def test_study_order_follows_series_updates(srv, store, client):
    """A study's instances come by their series' last update: an update of series 1's image set
    (an instance-level attribute no search returns) puts its instances before series 2's."""
    m1 = expected(store, lambda s: s["series"] == store["m1"])
    m2 = expected(store, lambda s: s["series"] == store["m2"])
    assert sops(client.search_for_instances(store["m_study"])) == m2 + m1
    mi = srv.client()
    (image_set,) = {s["image_set"] for s in store["sources"].values() if s["series"] == store["m1"]}
    latest = mi.get_image_set(datastoreId=store["ds"], imageSetId=image_set)["versionId"]
    updatable = {"SchemaVersion": 1.1, "Study": {"Series": {store["m1"]: {"Instances": {
        uid(1, 3): {"DICOM": {"ImageComments": "touched"}}}}}}}
    update(mi, store["ds"], image_set, latest, updatable)
    assert wait_unlocked(mi, store["ds"], image_set)["imageSetWorkflowStatus"] == "UPDATED"
    assert sops(client.search_for_instances(store["m_study"])) == m1 + m2
    # The series' own order and the data store's are unchanged.
    assert sops(client.search_for_instances(store["m_study"], store["m1"])) == m1
    assert sops(client.search_for_instances()) == expected(store)
    (obj,) = client.search_for_instances(search_filters={"SOPInstanceUID": uid(1, 3)}, fields=["ImageComments"])
    assert obj["00204000"] == {"vr": "LT", "Value": ["touched"]}


def test_copies_follow(srv, store, client):
    """CopyImageSet: a copy without destination is a non-primary image set (its instances are not
    found); an instance renamed in it (forced update) and copied into series 2's primary image set
    is found there, with the copied attributes."""
    mi = srv.client()
    ds = store["ds"]
    primary = store["sources"][uid(2, 1)]["image_set"]
    before = sops(client.search_for_instances())
    dup = fresh_copy(mi, ds, primary)
    assert sops(client.search_for_instances()) == before
    update(mi, ds, dup, "1", {"SchemaVersion": 1.1, "Study": {"Series": {store["m2"]: {"Instances": {
        uid(2, 1): {"DICOM": {"SOPInstanceUID": uid(2, 9)}}}}}}}, force=True)
    assert wait_unlocked(mi, ds, dup)["imageSetWorkflowStatus"] == "UPDATED"
    assert client.search_for_instances(search_filters={"SOPInstanceUID": uid(2, 9)}) == []
    latest = mi.get_image_set(datastoreId=ds, imageSetId=primary)["versionId"]
    mi.copy_image_set(datastoreId=ds, sourceImageSetId=dup, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "2", "DICOMCopies": {"copiableAttributes": json.dumps(
            {"SchemaVersion": 1.1, "Study": {"Series": {store["m2"]: {"Instances": {uid(2, 9): {}}}}}})}},
        "destinationImageSet": {"imageSetId": primary, "latestVersionId": latest}})
    done = wait_unlocked(mi, ds, primary)
    wait_unlocked(mi, ds, dup)
    assert done["imageSetWorkflowStatus"] == "COPIED", done
    # The copied instance: m2-a.dcm's attributes under the new SOP Instance UID.
    d = pydicom.dcmread(store["files"]["m2-a.dcm"], stop_before_pixels=True)
    d.SOPInstanceUID = uid(2, 9)
    store["sources"][uid(2, 9)] = {"name": "m2-a.dcm (copied as .9)", "path": None, "ds": d,
                                   "json": d.to_json_dict(), "study": store["m_study"], "series": store["m2"],
                                   "image_set": primary}
    got = client.search_for_instances(store["m_study"], store["m2"])
    assert sops(got) == [uid(2, 2), uid(2, 1), uid(2, 9)]
    for obj in got:
        check_instance(obj, store, "series", "after copy")
    # Series 2 changed last: first in its study again.
    m1 = expected(store, lambda s: s["series"] == store["m1"])
    assert sops(client.search_for_instances(store["m_study"])) == [uid(2, 2), uid(2, 1), uid(2, 9)] + m1
    assert sops(client.search_for_instances()) == expected(store)


def test_stored_instances_are_found(store, client, corpus, tmp_path):
    """STOW-RS (dicomweb-client's store_instances): an instance added to series 2's primary image
    set and a new study are found as soon as the store request has answered; series 2 is the
    study's newest series again."""
    added = edited(corpus, tmp_path, "MR_small.dcm", "m2-c.dcm", SOPInstanceUID=uid(2, 3), InstanceNumber="3",
                   SeriesInstanceUID=uid(2), SeriesNumber="2", SeriesDescription="Coronal T2",
                   SeriesDate="20040827", SeriesTime="090000", ReferringPhysicianName="Watson^John^H")
    new = edited(corpus, tmp_path, "CT_small.dcm", "s-1.dcm", StudyInstanceUID=uid(8), SeriesInstanceUID=uid(8, 1),
                 SOPInstanceUID=uid(8, 1, 1), InstanceNumber=None, ReferringPhysicianName="Stored^Via^Stow",
                 SeriesDescription="Stored")
    resp = client.store_instances([pydicom.dcmread(added), pydicom.dcmread(new)])
    assert "FailedSOPSequence" not in resp
    assert [str(r.ReferencedSOPInstanceUID) for r in resp.ReferencedSOPSequence] == [uid(2, 3), uid(8, 1, 1)]
    for name, path in (("m2-c.dcm", added), ("s-1.dcm", new)):
        d = pydicom.dcmread(path, stop_before_pixels=True)
        store["sources"][str(d.SOPInstanceUID)] = {
            "name": name, "path": path, "ds": d, "json": d.to_json_dict(), "study": str(d.StudyInstanceUID),
            "series": str(d.SeriesInstanceUID), "image_set": None}
    m1 = expected(store, lambda s: s["series"] == store["m1"])
    m2 = expected(store, lambda s: s["series"] == store["m2"])
    assert m2[-1] == uid(2, 3)
    got = client.search_for_instances(store["m_study"])
    assert sops(got) == m2 + m1
    for obj in got:
        check_instance(obj, store, "study", "after STOW")
    got = client.search_for_instances(uid(8), uid(8, 1))
    assert sops(got) == [uid(8, 1, 1)]
    check_instance(got[0], store, "series", "STOW new study")
    got = client.search_for_instances()
    assert sops(got) == expected(store)
    for obj in got:
        check_instance(obj, store, "all", "/instances after STOW")
    (study,) = client.search_for_studies(search_filters={"ReferringPhysicianName": "Stored^Via^Stow"})
    assert value(study, "0020000D") == uid(8)


def test_update_and_delete_follow(srv, store, client):
    """Study X: UpdateImageSetMetadata removes instance 2 (removableAttributes), renumbers
    instance 3 and renames the referring physician; instance search follows. DeleteImageSet
    then removes all its instances."""
    mi = srv.client()
    ds = store["ds"]
    (image_set,) = {s["image_set"] for s in store["sources"].values() if s["study"] == uid(9)}
    x = lambda s: s["study"] == uid(9)  # noqa: E731
    assert sops(client.search_for_instances(uid(9))) == expected(store, x) == [uid(9, 1, i) for i in (1, 2, 3)]
    latest = mi.get_image_set(datastoreId=ds, imageSetId=image_set)["versionId"]
    removable = {"SchemaVersion": 1.1, "Study": {"Series": {uid(9, 1): {"Instances": {uid(9, 1, 2): {}}}}}}
    updatable = {"SchemaVersion": 1.1,
                 "Study": {"DICOM": {"ReferringPhysicianName": "Gregson^Tobias"},
                           "Series": {uid(9, 1): {"Instances": {uid(9, 1, 3): {"DICOM": {"InstanceNumber": "0"}}}}}}}
    update(mi, ds, image_set, latest, updatable, removable)
    done = wait_unlocked(mi, ds, image_set)
    assert done["imageSetWorkflowStatus"] == "UPDATED", done
    got = client.search_for_instances(uid(9))
    # Instance 3 is now number 0: first.
    assert sops(got) == [uid(9, 1, 3), uid(9, 1, 1)]
    assert got[0]["00200013"] == {"vr": "IS", "Value": [0]}
    for where in (client.search_for_instances(), client.search_for_instances(uid(9), uid(9, 1)),
                  client.search_for_instances(search_filters={"SOPInstanceUID": uid(9, 1, 2)})):
        assert uid(9, 1, 2) not in sops(where)
    assert sops(client.search_for_instances(search_filters={"InstanceNumber": "0"})) == [uid(9, 1, 3)]
    (study,) = client.search_for_studies(search_filters={"StudyInstanceUID": uid(9)})
    assert study["00080090"] == {"vr": "PN", "Value": [{"Alphabetic": "Gregson^Tobias"}]}
    assert study["00201208"] == {"vr": "IS", "Value": [2]}
    assert sops(client.search_for_instances(search_filters={"ReferringPhysicianName": "Gregson*"})) == \
        [uid(9, 1, 3), uid(9, 1, 1)]
    assert client.search_for_instances(search_filters={"ReferringPhysicianName": "Lestrade*"}) == []

    mi.delete_image_set(datastoreId=ds, imageSetId=image_set)
    deadline = time.monotonic() + 30
    while mi.get_image_set(datastoreId=ds, imageSetId=image_set)["imageSetState"] != "DELETED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.search_for_instances(uid(9)) == []
    assert client.search_for_instances(uid(9), uid(9, 1)) == []
    assert client.search_for_instances(search_filters={"StudyInstanceUID": uid(9)}) == []
    assert not {uid(9, 1, 1), uid(9, 1, 3)} & set(sops(client.search_for_instances()))
    # The rest of the data store is untouched.
    for k in [k for k, s in store["sources"].items() if x(s)]:
        del store["sources"][k]
    assert sops(client.search_for_instances()) == expected(store)


# --- upgrading: the start-up backfill ----------------------------------------------------------


PRE_UPGRADE_SQL = ("UPDATE image_sets SET qido_indexed = 0, referring_physician_name = NULL, "
                   "series_description = NULL, series_date = NULL, series_time = NULL; "
                   "DELETE FROM dicom_instances;")


def snapshot(client, m_study):
    return {
        "instances": client.search_for_instances(),
        "instances_all": client.search_for_instances(fields=["all"]),
        "by_key": client.search_for_instances(search_filters={"InstanceNumber": "2", "Modality": "MR"}),
        "study_m": client.search_for_instances(m_study),
        "studies": sorted(client.search_for_studies(), key=lambda s: value(s, "0020000D")),
        "series": sorted(client.search_for_series(fields=["SeriesDate", "SeriesTime"]),
                         key=lambda s: value(s, "0020000E")),
        "by_description": client.search_for_series(search_filters={"SeriesDescription": "* T?*"}),
    }


def test_backfill_after_upgrade(srv, store, client):
    import test_import

    before = snapshot(client, store["m_study"])
    assert sops(before["instances"]) == expected(store)
    assert before["by_description"]
    env = conftest.scale_out_env(srv.data_dir, srv.log_dir.parent)
    assert srv.stop() == 0
    try:
        if not env:
            catalog = srv.data_dir / "catalog.db"
            assert catalog.exists(), sorted(p.name for p in srv.data_dir.iterdir())
            con = sqlite3.connect(catalog)
            try:
                con.executescript(PRE_UPGRADE_SQL)
                con.commit()
            finally:
                con.close()
        else:
            if shutil.which("psql") is None:
                pytest.skip("postgres-s3: no psql to rewrite the catalog as before the upgrade")
            subprocess.run(["psql", env["LIGHTBOX_CATALOG"], "-q", "-v", "ON_ERROR_STOP=1", "-c", PRE_UPGRADE_SQL],
                           check=True, capture_output=True)
        assert test_import.catalog_rows(srv, "SELECT COUNT(*) FROM dicom_instances") == [(0,)]
        assert test_import.catalog_rows(srv, "SELECT COUNT(*) FROM image_sets WHERE qido_indexed <> 0") == [(0,)]
    finally:
        srv.start()
    deadline = time.monotonic() + 30
    while True:
        now = snapshot(client, store["m_study"])
        if now == before:
            break
        if time.monotonic() > deadline:
            for k in before:
                assert now[k] == before[k], k
        time.sleep(0.25)
    assert test_import.catalog_rows(
        srv, "SELECT COUNT(*) FROM image_sets WHERE qido_indexed = 0 AND state <> 'DELETED'") == [(0,)]
    # Logged when done.
    assert "backfill" in srv.stderr_path.read_text(errors="replace").lower(), srv.read_stderr()
