"""The shared servers are real and isolated per test."""

import smtplib
import uuid
from email.message import EmailMessage

import sqlalchemy as sa


def test_database_is_fresh_and_real(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        tables = sa.text("select count(*) from pg_tables where schemaname='public'")
        assert conn.execute(tables).scalar() == 0
        conn.execute(sa.text("create table t (x int)"))
        conn.execute(sa.text("insert into t values (42)"))
        assert conn.execute(sa.text("select x from t")).scalar() == 42
        assert "PostgreSQL" in str(conn.execute(sa.text("select version()")).scalar())
    engine.dispose()


def test_bucket_round_trip_and_presign(minio_server, s3_bucket: str) -> None:
    import httpx

    client = minio_server.client()
    client.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"hello", ContentType="text/plain")
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "a/b.txt"}, ExpiresIn=60
    )
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"hello"
    tampered = url.replace("a/b.txt", "a/c.txt")
    assert httpx.get(tampered).status_code == 403
    assert minio_server.keys(s3_bucket) == ["a/b.txt"]


def test_smtp_captures_real_mail(smtp_server) -> None:
    message = EmailMessage()
    message["From"] = "noreply@videoflix.test"
    message["To"] = "someone@example.test"
    subject = f"hello {uuid.uuid4()}"
    message["Subject"] = subject
    message.set_content("plain body")
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as smtp:
        smtp.send_message(message)
    assert [m["Subject"] for m in smtp_server.messages] == [subject]
