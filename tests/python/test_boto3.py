"""boto3 against the real `lightbox` binary: the control plane, typed errors, host-prefix
handling, credentials, and restart."""

import datetime
import signal
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import Lightbox, wait_status

KMS = "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"


def error_of(excinfo):
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Message", "")


def is_uuid(s):
    try:
        uuid.UUID(s)
        return True
    except (ValueError, TypeError):
        return False


def test_datastore_lifecycle(server):
    c = server.client()
    out = c.create_datastore(datastoreName="demo", kmsKeyArn=KMS, tags={"team": "rad"})
    assert out["datastoreStatus"] == "CREATING"
    ds = out["datastoreId"]
    assert len(ds) == 32
    assert is_uuid(out["ResponseMetadata"]["RequestId"])

    props = wait_status(c, ds, "ACTIVE")
    assert props["datastoreName"] == "demo"
    assert props["kmsKeyArn"] == KMS
    assert props["losslessStorageFormat"] == "HTJ2K"
    assert props["datastoreArn"] == f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{ds}"
    assert isinstance(props["createdAt"], datetime.datetime)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - props["createdAt"]).total_seconds()) < 60
    assert props["updatedAt"] >= props["createdAt"]

    summaries = c.list_datastores()["datastoreSummaries"]
    assert [s["datastoreId"] for s in summaries] == [ds]
    assert "nextToken" not in c.list_datastores()

    out = c.delete_datastore(datastoreId=ds)
    assert out == {**out, "datastoreId": ds, "datastoreStatus": "DELETING"}
    wait_status(c, ds, "DELETED")
    assert c.delete_datastore(datastoreId=ds)["datastoreStatus"] == "DELETED"


def test_pagination_newest_first(server):
    c = server.client()
    ids = [c.create_datastore(datastoreName=f"p{i}")["datastoreId"] for i in range(5)]
    newest_first = list(reversed(ids))
    for page_size in (1, 2, 4, 5, 50):
        pages = list(c.get_paginator("list_datastores").paginate(PaginationConfig={"PageSize": page_size}))
        got = [s["datastoreId"] for p in pages for s in p["datastoreSummaries"]]
        assert got == newest_first, page_size
        assert all(len(p["datastoreSummaries"]) <= page_size for p in pages)
        assert "nextToken" not in pages[-1]
    # status filter
    wait_status(c, ids[0], "ACTIVE")
    active = c.list_datastores(datastoreStatus="ACTIVE")["datastoreSummaries"]
    assert ids[0] in [s["datastoreId"] for s in active]
    assert all(s["datastoreStatus"] == "ACTIVE" for s in active)


def test_idempotency_and_conflict(server):
    c = server.client()
    a = c.create_datastore(datastoreName="idem", clientToken="tok-1")["datastoreId"]
    b = c.create_datastore(datastoreName="idem", clientToken="tok-1")["datastoreId"]
    assert a == b
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.create_datastore(datastoreName="different", clientToken="tok-1")
    assert error_of(ei)[:2] == ("ConflictException", 409)
    assert isinstance(ei.value, c.exceptions.ConflictException)


def test_modeled_errors(server):
    c = server.client()
    with pytest.raises(c.exceptions.ResourceNotFoundException) as ei:
        c.get_datastore(datastoreId=uuid.uuid4().hex)
    code, status, _ = error_of(ei)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert is_uuid(ei.value.response["ResponseMetadata"]["RequestId"])

    with pytest.raises(c.exceptions.ValidationException) as ei:
        c.create_datastore(datastoreName="bad name!")
    assert error_of(ei)[2] == (
        "1 validation error detected: Value 'bad name!' at 'datastoreName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: [A-Za-z0-9._/#-]+"
    )
    with pytest.raises(c.exceptions.ValidationException):
        c.get_datastore(datastoreId="NOT-AN-ID")

    # Constraints botocore would check client-side go to the server with validation off.
    raw = server.client(parameter_validation=False)
    for kwargs, member in (
        ({"maxResults": 0}, "maxResults"),
        ({"maxResults": 51}, "maxResults"),
        ({"datastoreStatus": "SLEEPING"}, "datastoreStatus"),
        ({"nextToken": "forged-token"}, "nextToken"),
    ):
        with pytest.raises(raw.exceptions.ValidationException) as ei:
            raw.list_datastores(**kwargs)
        assert member in error_of(ei)[2], kwargs
    with pytest.raises(raw.exceptions.ValidationException) as ei:
        raw.create_datastore(datastoreName="", clientToken="t")
    assert "datastoreName" in error_of(ei)[2]


def test_quota(make_server):
    srv = make_server(env={"LIGHTBOX_MAX_DATASTORES": "1"})
    c = srv.client()
    c.create_datastore(datastoreName="only")
    with pytest.raises(c.exceptions.ServiceQuotaExceededException) as ei:
        c.create_datastore(datastoreName="one-too-many")
    assert error_of(ei)[:2] == ("ServiceQuotaExceededException", 402)


def test_tags(server):
    c = server.client()
    ds = c.create_datastore(datastoreName="tags", tags={"a": "1"})["datastoreId"]
    wait_status(c, ds, "ACTIVE")
    arn = f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{ds}"
    c.tag_resource(resourceArn=arn, tags={"b": "2", "c": "3"})
    assert c.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "1", "b": "2", "c": "3"}
    c.untag_resource(resourceArn=arn, tagKeys=["a", "c"])
    assert c.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "2"}

    with pytest.raises(c.exceptions.ValidationException):
        c.tag_resource(resourceArn=arn, tags={"aws:x": "y"})
    with pytest.raises(c.exceptions.ValidationException):
        c.tag_resource(resourceArn=arn, tags={f"k{i}": "v" for i in range(50)})  # 1 + 50 > 50
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.list_tags_for_resource(
            resourceArn=f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{uuid.uuid4().hex}"
        )
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.list_tags_for_resource(resourceArn=f"{arn}/imageset/{uuid.uuid4().hex}")
    with pytest.raises(c.exceptions.ValidationException):
        c.list_tags_for_resource(resourceArn="arn:aws:s3:::bucket")
    assert c.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "2"}


def test_runtime_operation_with_inject_host_prefix_false(server):
    c = server.client()
    ds = c.create_datastore(datastoreName="rt")["datastoreId"]
    missing = uuid.uuid4().hex
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        c.get_image_set(datastoreId=ds, imageSetId=missing)
    code, status, message = error_of(ei)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert missing in message


def test_runtime_operation_with_env_disable_host_prefix_injection(server, monkeypatch):
    ds = server.client().create_datastore(datastoreName="rt-env")["datastoreId"]
    monkeypatch.setenv("AWS_DISABLE_HOST_PREFIX_INJECTION", "true")
    c = boto3.session.Session().client(
        "medical-imaging",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )
    found = c.search_image_sets(datastoreId=ds)
    assert found["imageSetsMetadataSummaries"] == []
    assert found["sort"] == {"sortOrder": "DESC", "sortField": "updatedAt"}
    # Control-plane calls are unaffected.
    assert c.get_datastore(datastoreId=ds)["datastoreProperties"]["datastoreId"] == ds


def test_host_prefix_is_injected_by_default(server):
    """Control check: without either setting botocore goes to runtime-127.0.0.1, which does not resolve."""
    c = boto3.client(
        "medical-imaging",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5),
    )
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as ei:
        c.get_image_set(datastoreId=uuid.uuid4().hex, imageSetId=uuid.uuid4().hex)
    assert "runtime-127.0.0.1" in str(ei.value)


def test_bad_credentials(server):
    for key, secret, code in (
        ("AKIDUNKNOWN", "test", "UnrecognizedClientException"),
        ("test", "wrong-secret", "InvalidSignatureException"),
    ):
        c = boto3.client(
            "medical-imaging",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(inject_host_prefix=False, retries={"max_attempts": 1}),
        )
        with pytest.raises(botocore.exceptions.ClientError) as ei:
            c.list_datastores()
        assert error_of(ei)[:2] == (code, 403)


def test_configured_credentials(make_server):
    srv = make_server(env={"LIGHTBOX_CREDENTIALS": "AKIDONE:secret-one,AKIDTWO:secret-two"})
    for key, secret in (("AKIDONE", "secret-one"), ("AKIDTWO", "secret-two")):
        c = boto3.client(
            "medical-imaging",
            endpoint_url=srv.url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}),
        )
        assert c.list_datastores()["datastoreSummaries"] == []
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        srv.client().list_datastores()
    assert error_of(ei)[:2] == ("UnrecognizedClientException", 403)


def test_region_and_account_flags(make_server):
    srv = make_server(env={"LIGHTBOX_REGION": "eu-west-2", "LIGHTBOX_ACCOUNT_ID": "123456789012"})
    c = boto3.client(
        "medical-imaging",
        endpoint_url=srv.url,
        region_name="eu-west-2",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )
    ds = c.create_datastore(datastoreName="eu")["datastoreId"]
    arn = c.get_datastore(datastoreId=ds)["datastoreProperties"]["datastoreArn"]
    assert arn == f"arn:aws:medical-imaging:eu-west-2:123456789012:datastore/{ds}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_restart_keeps_everything(make_server, tmp_path, sig):
    srv = make_server()
    c = srv.client()
    ds = c.create_datastore(datastoreName="persist", clientToken="persist-1", tags={"k": "v"})["datastoreId"]
    wait_status(c, ds, "ACTIVE")
    arn = f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{ds}"
    c.tag_resource(resourceArn=arn, tags={"k2": "v2"})
    other = c.create_datastore(datastoreName="other")["datastoreId"]
    wait_status(c, other, "ACTIVE")
    before = c.get_datastore(datastoreId=ds)["datastoreProperties"]

    assert srv.stop(sig) == 0, f"unclean exit on {sig!r}: {srv.read_stderr()}"
    srv.start()
    c = srv.client()
    assert c.get_datastore(datastoreId=ds)["datastoreProperties"] == before
    assert c.list_tags_for_resource(resourceArn=arn)["tags"] == {"k": "v", "k2": "v2"}
    assert [s["datastoreId"] for s in c.list_datastores()["datastoreSummaries"]] == [other, ds]
    assert c.create_datastore(datastoreName="persist", clientToken="persist-1", tags={"k": "v"})["datastoreId"] == ds
    assert srv.stop() == 0


def test_second_server_on_a_fresh_dir_is_empty(make_server):
    a = make_server()
    a.client().create_datastore(datastoreName="only-in-a")
    b = make_server()
    assert b.client().list_datastores()["datastoreSummaries"] == []
    assert isinstance(a, Lightbox)


def test_non_loopback_listener_needs_credentials(tmp_path):
    import os
    import subprocess

    from conftest import BIN, free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    cmd = [str(BIN), "serve", "--listen", f"0.0.0.0:{free_port()}", "--data-dir", str(tmp_path / "d")]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("a 0.0.0.0 listener with only the default test/test credentials must refuse to start")
    assert proc.returncode != 0
    assert "credential" in (proc.stdout + proc.stderr).lower(), proc.stderr[-2000:]

    # With configured credentials it starts.
    srv = Lightbox(tmp_path / "d2", tmp_path, env={"LIGHTBOX_CREDENTIALS": "AKIDWIDE:wide-secret"})
    srv.data_dir.mkdir()
    try:
        srv.start(listen_host="0.0.0.0")
        c = boto3.client(
            "medical-imaging",
            endpoint_url=f"http://127.0.0.1:{srv.port}",
            region_name="us-east-1",
            aws_access_key_id="AKIDWIDE",
            aws_secret_access_key="wide-secret",
            config=Config(retries={"max_attempts": 1}),
        )
        assert c.list_datastores()["datastoreSummaries"] == []
        assert srv.stop() == 0
    finally:
        srv.kill()


def test_logs_carry_request_ids_and_no_patient_data(server):
    c = server.client(parameter_validation=False)
    ds = c.create_datastore(datastoreName="logs")["datastoreId"]
    secret = "PATIENTSECRET-4711"
    criteria = {"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": secret}]}]}
    found = c.search_image_sets(datastoreId=ds, searchCriteria=criteria)
    assert found["imageSetsMetadataSummaries"] == []
    rid = found["ResponseMetadata"]["RequestId"]
    long_secret = secret + "9" * 600
    criteria = {"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": long_secret}]}]}
    with pytest.raises(c.exceptions.ValidationException) as ei:
        c.search_image_sets(datastoreId=ds, searchCriteria=criteria)
    assert secret not in error_of(ei)[2]
    assert server.stop() == 0
    log = server.stderr_path.read_text(errors="replace")
    assert rid in log, "each request is logged with its request id"
    assert secret not in log, "patient data in the server log"
