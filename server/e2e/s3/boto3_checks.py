"""Drives Bindery's S3 API with boto3 and checks every result.

Reads BINDERY_S3_ENDPOINT, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; prints one JSON
line {"passed": [...], "failures": [...]}.
"""

import hashlib
import json
import os
import sys
import traceback
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BINDERY_S3_ENDPOINT"]
passed, failures = [], []


def client(**overrides):
    args = dict(
        service_name="s3",
        endpoint_url=ENDPOINT,
        region_name="auto",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    args.update(overrides)
    return boto3.client(**args)


def check(name, actual, expected):
    if actual == expected:
        passed.append(name)
    else:
        failures.append({"name": name, "expected": repr(expected), "actual": repr(actual)})


def error_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"].get("Code"), e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def run():
    s3 = client()
    b = "boto-bucket"
    s3.create_bucket(Bucket=b)
    check("list_buckets shows the bucket", b in [x["Name"] for x in s3.list_buckets()["Buckets"]], True)
    check("head_bucket", s3.head_bucket(Bucket=b)["ResponseMetadata"]["HTTPStatusCode"], 200)
    check("create_bucket twice", error_code(lambda: s3.create_bucket(Bucket=b))[1], 409)
    check("head of a missing bucket", error_code(lambda: s3.head_bucket(Bucket="no-such-bucket"))[1], 404)

    body = b"Hello, S3 world!"
    put = s3.put_object(Bucket=b, Key="docs/hello.txt", Body=body, ContentType="text/plain",
                        Metadata={"owner": "alice"}, CacheControl="max-age=60")
    check("put etag is the md5", put["ETag"], '"%s"' % hashlib.md5(body).hexdigest())
    got = s3.get_object(Bucket=b, Key="docs/hello.txt")
    check("get body", got["Body"].read(), body)
    check("get content type", got["ContentType"], "text/plain")
    check("get metadata", got["Metadata"], {"owner": "alice"})
    check("get cache control", got["CacheControl"], "max-age=60")
    check("get content length", got["ContentLength"], len(body))
    check("get etag", got["ETag"], put["ETag"])

    ranged = s3.get_object(Bucket=b, Key="docs/hello.txt", Range="bytes=0-4")
    check("range body", ranged["Body"].read(), b"Hello")
    check("range status", ranged["ResponseMetadata"]["HTTPStatusCode"], 206)
    check("content range", ranged["ContentRange"], "bytes 0-4/16")
    suffix = s3.get_object(Bucket=b, Key="docs/hello.txt", Range="bytes=-6")
    check("suffix range", suffix["Body"].read(), b"world!")

    check("If-None-Match gives 304", error_code(lambda: s3.get_object(Bucket=b, Key="docs/hello.txt", IfNoneMatch=put["ETag"]))[1], 304)
    check("If-Match mismatch gives 412", error_code(lambda: s3.get_object(Bucket=b, Key="docs/hello.txt", IfMatch='"nope"')), ("PreconditionFailed", 412))
    check("If-Match match", s3.get_object(Bucket=b, Key="docs/hello.txt", IfMatch=put["ETag"])["Body"].read(), body)
    head = s3.head_object(Bucket=b, Key="docs/hello.txt")
    check("head_object size and metadata", (head["ContentLength"], head["Metadata"]), (len(body), {"owner": "alice"}))
    check("head of a missing key", error_code(lambda: s3.head_object(Bucket=b, Key="missing")), ("404", 404))
    check("get of a missing key", error_code(lambda: s3.get_object(Bucket=b, Key="missing")), ("NoSuchKey", 404))

    odd = "dir/a key+plus%20&=\u00e9.txt"
    s3.put_object(Bucket=b, Key=odd, Body=b"odd")
    check("odd key round trip", s3.get_object(Bucket=b, Key=odd)["Body"].read(), b"odd")
    listed = s3.list_objects_v2(Bucket=b, Prefix="dir/")
    check("list_objects_v2 decodes odd keys", [o["Key"] for o in listed.get("Contents", [])], [odd])

    for i in range(5):
        s3.put_object(Bucket=b, Key="many/%d.txt" % i, Body=b"x" * i)
    s3.put_object(Bucket=b, Key="many/sub/deep.txt", Body=b"deep")
    top = s3.list_objects_v2(Bucket=b, Prefix="many/", Delimiter="/")
    check("delimiter common prefixes", [p["Prefix"] for p in top.get("CommonPrefixes", [])], ["many/sub/"])
    check("delimiter contents", len(top["Contents"]), 5)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix="many/", PaginationConfig={"PageSize": 2})
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    check("v2 pagination", keys, ["many/%d.txt" % i for i in range(5)] + ["many/sub/deep.txt"])
    pages = s3.get_paginator("list_objects").paginate(Bucket=b, Prefix="many/", PaginationConfig={"PageSize": 2})
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    check("v1 pagination with markers", keys, ["many/%d.txt" % i for i in range(5)] + ["many/sub/deep.txt"])
    check("size in listing", [o["Size"] for o in s3.list_objects_v2(Bucket=b, Prefix="many/0")["Contents"]], [0])

    s3.copy_object(Bucket=b, Key="docs/copy.txt", CopySource={"Bucket": b, "Key": "docs/hello.txt"})
    copy = s3.get_object(Bucket=b, Key="docs/copy.txt")
    check("copy body and metadata", (copy["Body"].read(), copy["Metadata"]), (body, {"owner": "alice"}))

    sha = s3.put_object(Bucket=b, Key="sums.txt", Body=b"checksummed", ChecksumAlgorithm="SHA256")
    check("put with a SHA-256 checksum", sha["ResponseMetadata"]["HTTPStatusCode"], 200)
    check("checksummed body", s3.get_object(Bucket=b, Key="sums.txt")["Body"].read(), b"checksummed")
    import base64
    bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    check("a wrong Content-MD5 is refused", error_code(lambda: s3.put_object(Bucket=b, Key="bad.txt", Body=b"data", ContentMD5=bad_md5))[0], "BadDigest")
    check("nothing stored after a bad digest", error_code(lambda: s3.head_object(Bucket=b, Key="bad.txt"))[1], 404)
    check("If-None-Match * on an existing key", error_code(lambda: s3.put_object(Bucket=b, Key="docs/hello.txt", Body=b"x", IfNoneMatch="*"))[1], 412)

    # multipart
    up = s3.create_multipart_upload(Bucket=b, Key="big.bin", ContentType="application/octet-stream", Metadata={"k": "v"})
    part1 = b"A" * (5 * 1024 * 1024)
    p1 = s3.upload_part(Bucket=b, Key="big.bin", UploadId=up["UploadId"], PartNumber=1, Body=part1)
    p2 = s3.upload_part(Bucket=b, Key="big.bin", UploadId=up["UploadId"], PartNumber=2, Body=b"tail")
    parts = s3.list_parts(Bucket=b, Key="big.bin", UploadId=up["UploadId"])["Parts"]
    check("list_parts", [(p["PartNumber"], p["Size"]) for p in parts], [(1, len(part1)), (2, 4)])
    uploads = s3.list_multipart_uploads(Bucket=b).get("Uploads", [])
    check("list_multipart_uploads", [u["UploadId"] for u in uploads], [up["UploadId"]])
    done = s3.complete_multipart_upload(Bucket=b, Key="big.bin", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    check("multipart etag has the part count", done["ETag"].strip('"').endswith("-2"), True)
    big = s3.head_object(Bucket=b, Key="big.bin")
    check("multipart object size and metadata", (big["ContentLength"], big["Metadata"]), (len(part1) + 4, {"k": "v"}))
    tail = s3.get_object(Bucket=b, Key="big.bin", Range="bytes=-6")["Body"].read()
    check("range across parts", tail, b"AAtail")
    aborted = s3.create_multipart_upload(Bucket=b, Key="aborted.bin")
    s3.abort_multipart_upload(Bucket=b, Key="aborted.bin", UploadId=aborted["UploadId"])
    check("upload_part after abort", error_code(lambda: s3.upload_part(Bucket=b, Key="aborted.bin", UploadId=aborted["UploadId"], PartNumber=1, Body=b"x"))[0], "NoSuchUpload")

    # managed transfer (boto3's own multipart path)
    from boto3.s3.transfer import TransferConfig
    import io
    data = os.urandom(12 * 1024 * 1024)
    s3.upload_fileobj(io.BytesIO(data), b, "managed.bin", Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
    out = io.BytesIO()
    s3.download_fileobj(b, "managed.bin", out)
    check("managed multipart upload and download", hashlib.sha256(out.getvalue()).hexdigest(), hashlib.sha256(data).hexdigest())

    # presigned URLs
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "docs/hello.txt"}, ExpiresIn=300)
    check("presigned GET", urllib.request.urlopen(url).read(), body)
    tampered = url.replace("docs/hello.txt", "docs/copy.txt")
    try:
        urllib.request.urlopen(tampered)
        check("tampered presigned URL", "accepted", "refused")
    except urllib.error.HTTPError as e:
        check("tampered presigned URL", e.code, 403)

    # credentials
    wrong = client(aws_secret_access_key="wrong-secret")
    check("wrong secret", error_code(lambda: wrong.list_buckets()), ("SignatureDoesNotMatch", 403))
    stranger = client(aws_access_key_id="someone-else")
    check("unknown access key", error_code(lambda: stranger.list_buckets()), ("InvalidAccessKeyId", 403))

    # deletes
    s3.delete_object(Bucket=b, Key="docs/copy.txt")
    check("delete_object", error_code(lambda: s3.head_object(Bucket=b, Key="docs/copy.txt"))[1], 404)
    every = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=b) for o in p.get("Contents", [])]
    check("delete_bucket of a non-empty bucket", error_code(lambda: s3.delete_bucket(Bucket=b)), ("BucketNotEmpty", 409))
    res = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in every]})
    check("delete_objects reports every key", sorted(d["Key"] for d in res.get("Deleted", [])), sorted(every))
    check("bucket is empty", s3.list_objects_v2(Bucket=b).get("KeyCount"), 0)
    s3.create_bucket(Bucket="to-delete")
    s3.delete_bucket(Bucket="to-delete")
    check("delete_bucket", "to-delete" in [x["Name"] for x in s3.list_buckets()["Buckets"]], False)
    # Leave one object for the cross-protocol check.
    s3.put_object(Bucket=b, Key="from-s3.txt", Body=b"written through S3", Metadata={"via": "boto3"})


try:
    run()
except Exception:
    failures.append({"name": "uncaught", "detail": traceback.format_exc()})
print(json.dumps({"passed": passed, "failures": failures}))
sys.exit(0)
