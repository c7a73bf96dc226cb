"""QIDO-RS (DICOMweb search, issue #8) through `dicomweb-client` — a client we did not write — on
a `requests.Session` signed with botocore's SigV4 (service `medical-imaging`), against the real
binary with studies made by real import jobs: OHIF's study-list query, every match kind
(exact, wildcard, date/time ranges, UID lists, fuzzy names, ModalitiesInStudy), includefield,
ordering (studies by last update, series by SeriesNumber), offset paging, non-primary image sets
never listed, deleted image sets gone, and bad parameters answered 400 with a JSON message.
Runs on both backends (LIGHTBOX_TEST_BACKEND=embedded | postgres-s3)."""

import time

import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from conftest import module_server, signed_session
from test_image_set_reads import boto3_import
from test_import import make_datastore

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.10.1507.77"


def uid(*parts):
    return ".".join([ROOT, *map(str, parts)])


# Studies, imported one job each in this order (so their last updates are in this order).
# Series: (number, modality, instances[, conflicting instances (other PatientID: non-primary)]).
STUDIES = [
    dict(n=1, patient="Doe^John", pid="QIDO-P1", acc="ACC-001", date="20130601", time="101500",
         desc="Chest CT", series=[(2, "CT", 2, 0), (1, "MR", 1, 1)]),
    dict(n=2, patient="Smith^Anna^Marie", pid="QIDO-P2", acc="ACC-002", date="20140102", time="083000",
         desc="Abdomen", series=[(3, "PT", 1, 0)]),
    dict(n=3, patient="O'Brien^Sean", pid="QIDO-P3", acc="XYZ-9", date="20150101", time="235959",
         desc="Head", series=[(1, "CT", 1, 0)]),
    dict(n=4, patient="Doe^Jane", pid="QIDO-P4", acc="ACC-004", date="20130509", time="120000",
         desc="Chest CT", series=[(5, "CT", 1, 0), (None, "SR", 1, 0)]),
    dict(n=5, patient="Mustermann^Erika", pid="QIDO-P5", acc="ACC_005", date="20200101", time="000000",
         desc="Knee", series=[(1, "MR", 1, 0)]),
]


def study_uid(s):
    return uid(s["n"])


def series_uid(s, k):
    return uid(s["n"], k + 1)


def write_instances(out, s):
    """P10 files of one study (8x8 8-bit, explicit VR little endian)."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    files = {}
    for k, (number, modality, count, conflicts) in enumerate(s["series"]):
        for i in range(count + conflicts):
            ds = Dataset()
            sop = uid(s["n"], k + 1, i + 1)
            ds.SOPClassUID = CT_IMAGE
            ds.SOPInstanceUID = sop
            ds.StudyInstanceUID = study_uid(s)
            ds.SeriesInstanceUID = series_uid(s, k)
            ds.PatientName = s["patient"]
            ds.PatientID = s["pid"] if i < count else s["pid"] + "-CONFLICT"
            ds.PatientBirthDate = "19700101"
            ds.PatientSex = "O"
            ds.AccessionNumber = s["acc"]
            ds.StudyID = f"S{s['n']}"
            ds.StudyDate = s["date"]
            ds.StudyTime = s["time"]
            ds.StudyDescription = s["desc"]
            ds.Modality = modality
            if number is not None:
                ds.SeriesNumber = number
            ds.BodyPartExamined = "CHEST"
            ds.InstanceNumber = i + 1
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = ds.Columns = 8
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit = 7
            ds.PixelRepresentation = 0
            ds.PixelData = (np.arange(64, dtype=np.uint8) * (i + 1)).tobytes()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            path = out / f"study{s['n']}-series{k}-{i}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files[path.name] = path
    return files


@pytest.fixture(scope="module")
def srv(tmp_path_factory, module_aws_env):
    server = module_server(tmp_path_factory, "qido-server")
    yield server
    server.kill()


@pytest.fixture(scope="module")
def store(srv, tmp_path_factory):
    """One data store with the five studies (one import job each), study 3 then deleted; and an
    empty data store."""
    root = tmp_path_factory.mktemp("qido-store")
    ds = make_datastore(srv, "qido")
    placed = {}
    for s in STUDIES:
        out = root / f"study{s['n']}"
        out.mkdir()
        files = write_instances(out, s)
        got, _ = boto3_import(srv, ds, "qido", files, f"s{s['n']}")
        placed.update(got)
    # Study 3's only image set is deleted.
    mi = srv.client()
    (deleted,) = {r["imageSetId"] for k, r in placed.items() if k.startswith("study3-")}
    mi.delete_image_set(datastoreId=ds, imageSetId=deleted)
    deadline = time.monotonic() + 30
    while mi.get_image_set(datastoreId=ds, imageSetId=deleted)["imageSetState"] != "DELETED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    non_primary = {r["imageSetId"] for r in placed.values() if not r.get("isPrimary", True)}
    assert len(non_primary) == 1, placed
    empty = make_datastore(srv, "qido-empty")
    return {"ds": ds, "empty": empty, "placed": placed, "non_primary": non_primary}


@pytest.fixture(scope="module")
def client(srv, store):
    return DICOMwebClient(url=f"{srv.url}/datastore/{store['ds']}", session=signed_session())


def value(obj, tag):
    v = obj.get(tag, {}).get("Value")
    return v[0] if v else None


def uids(results, tag="0020000D"):
    return [value(r, tag) for r in results]


LIVE = [5, 4, 2, 1]  # newest first; study 3 is deleted


def by_n(*ns):
    return [uid(n) for n in ns]


def test_ohif_study_list(srv, store, client):
    # The exact query OHIF's study list sends (raw, as it encodes it).
    url = f"{srv.url}/datastore/{store['ds']}/studies"
    r = signed_session().get(url + "?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060",
                             headers={"Accept": "application/dicom+json"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/dicom+json"
    studies = r.json()
    assert uids(studies) == by_n(*LIVE)
    one = studies[LIVE.index(1)]
    assert one["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}
    assert one["00100020"] == {"vr": "LO", "Value": ["QIDO-P1"]}
    assert one["00080050"] == {"vr": "SH", "Value": ["ACC-001"]}
    assert one["00080020"] == {"vr": "DA", "Value": ["20130601"]}
    assert one["00080030"] == {"vr": "TM", "Value": ["101500"]}
    assert one["00081030"] == {"vr": "LO", "Value": ["Chest CT"]}
    assert one["00100030"] == {"vr": "DA", "Value": ["19700101"]}
    assert one["00100040"] == {"vr": "CS", "Value": ["O"]}
    assert one["00200010"] == {"vr": "SH", "Value": ["S1"]}
    assert one["00080061"] == {"vr": "CS", "Value": ["CT", "MR"]}
    # Primary image sets only: the conflicting MR instance is not counted.
    assert one["00201206"] == {"vr": "IS", "Value": [2]}
    assert one["00201208"] == {"vr": "IS", "Value": [3]}
    assert one["00081190"] == {"vr": "UR", "Value": [f"{url}/{uid(1)}"]}
    # OHIF's filters.
    for filters, want in [
        ({"PatientName": "*Doe*"}, [4, 1]),
        ({"PatientName": "Doe^J*"}, [4, 1]),
        ({"PatientID": "QIDO-P2"}, [2]),
        ({"AccessionNumber": "ACC-004"}, [4]),
        ({"StudyDate": "20130101-20131231"}, [4, 1]),
        ({"StudyDescription": "Chest*"}, [4, 1]),
        ({"ModalitiesInStudy": "MR"}, [5, 1]),
    ]:
        got = client.search_for_studies(limit=101, offset=0, fuzzymatching=False,
                                        fields=["00081030", "00080060"], search_filters=filters)
        assert uids(got) == by_n(*want), filters


def test_dicom_host_name(srv, store):
    """AWS serves DICOMweb on its own `dicom-medical-imaging.<region>` host: a deployment mirroring
    that gives Lightbox a `dicom-<host>` name. Routing is by path and SigV4 signs the Host sent,
    so the same listener answers under that name, and RetrieveURLs use it."""
    port = srv.url.rsplit(":", 1)[1]
    host = f"dicom-localhost:{port}"
    r = signed_session().get(f"{srv.url}/datastore/{store['ds']}/studies?limit=1",
                             headers={"Accept": "application/dicom+json", "Host": host})
    assert r.status_code == 200, r.text
    [study] = r.json()
    assert study["00081190"]["Value"][0].startswith(f"http://{host}/datastore/{store['ds']}/studies/")


def test_study_matching(client):
    cases = [
        # Exact matching is case-sensitive; the conflicting PatientID is in a non-primary set.
        ({"PatientID": "qido-p1"}, []),
        ({"PatientID": "QIDO-P1-CONFLICT"}, []),
        ({"00100020": "QIDO-P5"}, [5]),
        # Wildcards: `?` one character, `*` any; `_` and `%` are not wildcards.
        ({"AccessionNumber": "ACC-00?"}, [4, 2, 1]),
        ({"AccessionNumber": "ACC?005"}, [5]),
        ({"AccessionNumber": "ACC_*"}, [5]),
        ({"AccessionNumber": "ACC%"}, []),
        ({"PatientName": "doe*"}, []),
        # Date and time ranges with open ends.
        ({"StudyDate": "-20131231"}, [4, 1]),
        ({"StudyDate": "20140101-"}, [5, 2]),
        ({"StudyDate": "20130509"}, [4]),
        ({"StudyTime": "0800-1100"}, [2, 1]),
        ({"StudyTime": "12"}, [4]),
        ({"StudyDate": "20130101-20141231", "StudyTime": "-0900"}, [2]),
        # UID lists, comma- or backslash-separated; a deleted study is not found.
        ({"StudyInstanceUID": f"{uid(1)},{uid(2)},{uid(3)}"}, [2, 1]),
        ({"0020000D": f"{uid(5)}\\{uid(4)}"}, [5, 4]),
        ({"StudyInstanceUID": uid(3)}, []),
        ({"ModalitiesInStudy": "SR"}, [4]),
        ({"ModalitiesInStudy": "CT,PT"}, [4, 2, 1]),
        # Universal matching.
        ({"PatientName": "*"}, LIVE),
        ({"PatientID": ""}, LIVE),
    ]
    for filters, want in cases:
        assert uids(client.search_for_studies(search_filters=filters)) == by_n(*want), filters


def test_fuzzy_names(client):
    for name, want in [("john", [1]), ("JO", [1]), ("doe", [4, 1]), ("mar", [2]), ("ohn", []),
                       ("o'b", []), ("er", [5])]:
        got = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": name})
        assert uids(got) == by_n(*want), name
    # Without fuzzy matching the same values are exact, case-sensitive matches.
    assert client.search_for_studies(fuzzymatching=False, search_filters={"PatientName": "john"}) == []


def test_paging(client):
    for offset, limit, want in [(0, 1, [5]), (1, 2, [4, 2]), (3, 2, [1]), (4, 2, []), (100, 5, [])]:
        got = client.search_for_studies(offset=offset, limit=limit)
        assert uids(got) == by_n(*want), (offset, limit)
    # dicomweb-client's own paging (offset += page size until an empty page).
    assert uids(client.search_for_studies(limit=1, get_remaining=True)) == by_n(*LIVE)
    # A limit beyond the maximum is capped, not refused.
    assert uids(client.search_for_studies(limit=5000)) == by_n(*LIVE)


def test_series(srv, store, client):
    series = client.search_for_series(study_instance_uid=uid(1))
    # By SeriesNumber; the MR series' non-primary image set is not a series of its own.
    assert uids(series, "0020000E") == [uid(1, 2), uid(1, 1)]
    mr = series[0]
    assert mr["00080060"] == {"vr": "CS", "Value": ["MR"]}
    assert mr["00200011"] == {"vr": "IS", "Value": [1]}
    assert mr["00201209"] == {"vr": "IS", "Value": [1]}
    assert mr["0020000D"] == {"vr": "UI", "Value": [uid(1)]}
    assert mr["00180015"] == {"vr": "CS", "Value": ["CHEST"]}
    # Built on the Host the client sent (dicomweb-client sends it without the port).
    retrieve = value(mr, "00081190")
    assert retrieve.startswith("http://127.0.0.1")
    assert retrieve.endswith(f"/datastore/{store['ds']}/studies/{uid(1)}/series/{uid(1, 2)}")
    assert "00100010" not in mr
    # Study attributes on request.
    with_name = client.search_for_series(study_instance_uid=uid(1), fields=["PatientName", "00100020"])
    assert with_name[0]["00100010"]["Value"][0]["Alphabetic"] == "Doe^John"
    assert with_name[0]["00100020"]["Value"] == ["QIDO-P1"]
    assert value(client.search_for_series(study_instance_uid=uid(1), fields=["all"])[0], "00080020") == "20130601"
    # A series without SeriesNumber comes last and has an empty one.
    four = client.search_for_series(study_instance_uid=uid(4))
    assert uids(four, "0020000E") == [uid(4, 1), uid(4, 2)]
    assert four[1]["00200011"] == {"vr": "IS"}
    # All series of the data store, by SeriesNumber (absent last; ties by SeriesInstanceUID).
    everything = client.search_for_series()
    assert uids(everything, "0020000E") == [uid(1, 2), uid(5, 1), uid(1, 1), uid(2, 1), uid(4, 1), uid(4, 2)]
    assert uids(client.search_for_series(offset=2, limit=2), "0020000E") == [uid(1, 1), uid(2, 1)]
    for filters, want in [
        ({"Modality": "MR"}, [uid(1, 2), uid(5, 1)]),
        ({"Modality": "CT", "PatientID": "QIDO-P4"}, [uid(4, 1)]),
        ({"SeriesNumber": "3"}, [uid(2, 1)]),
        ({"SeriesInstanceUID": f"{uid(4, 2)},{uid(3, 1)}"}, [uid(4, 2)]),
        ({"Modality": "US"}, []),
    ]:
        assert uids(client.search_for_series(search_filters=filters), "0020000E") == want, filters
    # The deleted study has no series; an unknown study neither.
    assert client.search_for_series(study_instance_uid=uid(3)) == []
    assert client.search_for_series(study_instance_uid=uid(404)) == []


def test_empty_data_store(srv, store):
    empty = DICOMwebClient(url=f"{srv.url}/datastore/{store['empty']}", session=signed_session())
    r = signed_session().get(f"{srv.url}/datastore/{store['empty']}/studies")
    assert (r.status_code, r.json()) == (200, [])
    assert empty.search_for_studies() == []
    assert empty.search_for_series() == []


def test_bad_requests(srv, store, client):
    base = f"{srv.url}/datastore/{store['ds']}"
    session = signed_session()
    for query, name in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("offset=-3", "offset"),
        ("fuzzymatching=sometimes", "fuzzymatching"),
        ("includefield=NotAKeyword", "includefield"),
        ("includefield=" + "%2C".join(["PatientID"] * 51), "includefield"),
        ("NotAKeyword=QIDO-P1", "NotAKeyword"),
        ("Modality=CT", "Modality"),
        ("SOPInstanceUID=1.2", "SOPInstanceUID"),
        ("PerformedProcedureStepStartDate=20130509", "PerformedProcedureStepStartDate"),
        ("StudyDate=2013-01-01", "StudyDate"),
        ("StudyTime=9999999", "StudyTime"),
        ("StudyInstanceUID=abc", "StudyInstanceUID"),
        ("PatientID=QIDO-P1&PatientID=QIDO-P2", "PatientID"),
    ]:
        r = session.get(f"{base}/studies?{query}")
        assert r.status_code == 400, (query, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json")
        message = r.json()["message"]
        assert name in message, (query, message)
        assert "QIDO-P" not in message and "Doe" not in message
    r = session.get(f"{base}/series?SeriesNumber=abc")
    assert r.status_code == 400 and "SeriesNumber" in r.json()["message"]
    # Through dicomweb-client: an HTTPError carrying the 400.
    with pytest.raises(requests.HTTPError) as e:
        client.search_for_studies(search_filters={"StudyDate": "yesterday"})
    assert e.value.response.status_code == 400
    # Unknown data store; unsigned request; XML.
    r = session.get(f"{srv.url}/datastore/{'0' * 32}/studies")
    assert r.status_code == 404, r.text
    assert requests.get(f"{base}/studies").status_code in (400, 403)
    r = session.get(f"{base}/studies", headers={"Accept": "application/dicom+xml"})
    assert r.status_code == 406, r.text


def test_no_patient_data_in_logs(srv, store, client):
    client.search_for_studies(search_filters={"PatientName": "Doe^John", "PatientID": "QIDO-P1"})
    with pytest.raises(requests.HTTPError):
        client.search_for_studies(search_filters={"PatientID": ["QIDO-P1", "QIDO-P2"]})
    log = srv.stderr_path.read_text(errors="replace")
    assert "SearchDICOMStudies" in log
    for secret in ("Doe", "QIDO-P", "Smith", "ACC-00"):
        assert secret not in log, secret
