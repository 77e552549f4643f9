"""The three clients' flows, driven through HTTP only (the operator's steps through the CLI),
each checking what a client was promised."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.e2e.platform_data import Platform, Snapshot, expected_files, expected_rows
from tests.e2e.stack import Mismatch, Services, expect, ok, wait_for

CHILDREN = ("e2e-child-1", "e2e-child-2", "e2e-child-3")
BYSTANDERS = ("e2e-adult-1", "e2e-adult-2")
WEB_WORKERS = 3


def years_ago(years: int) -> str:
    today = date.today()
    return today.replace(year=today.year - years, day=min(today.day, 28)).isoformat()


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Scenario:
    """The clients' flows against one deployment; every method checks what it drives."""

    def __init__(self, services: Services, platform: Platform, keys: dict[str, str]) -> None:
        self.s = services
        self.platform = platform
        self.legal, self.signup, self.ts = keys["legal"], keys["signup"], keys["ts"]

    def completed_cases(self) -> int:
        status, body = self.s.http("GET", "/v1/cases?state=completed&limit=200", self.ts)
        expect(status == 200 and body["next_cursor"] is None, f"completed cases: {status}")
        return len(body["items"])

    def secrets(self) -> list[str]:
        """What must never reach a log line: the birth dates sent, keys, evidence."""
        dates = [years_ago(12), "1990-04-01", "2013-02-29", "2999-01-01"]
        evidence = ["ticket:E2E-1", "ticket:E2E-2"]
        env = self.s.env
        signing_key = env["AGEGATE_RECEIPT_SIGNING_KEY"].splitlines()[1]  # the key's base64
        return [
            *dates,
            *evidence,
            self.legal,
            self.signup,
            self.ts,
            signing_key,
            env["AGEGATE_SECRET_KEY"],
        ]

    # -- operations ------------------------------------------------------------------------
    def health(self) -> None:
        status, body = self.s.http("GET", "/readyz")
        expect(status == 200, f"/readyz answered {status}: {body}")
        expect(body["checks"] == {"database": "ok", "redis": "ok"}, f"/readyz checks: {body}")
        ok("/readyz: database ok, redis ok")
        status, body = self.s.http("GET", "/v1/jurisdictions/DE")
        expect(status == 401 and body["code"] == "unauthenticated", f"no key: {status} {body}")
        status, body = self.s.http("GET", "/v1/jurisdictions/DE", self.signup)
        expect(status == 403 and body["code"] == "forbidden", f"wrong scope: {status} {body}")
        ok("no key → 401, a key without the scope → 403 (problem details)")

    # -- legal -----------------------------------------------------------------------------
    def legal_edits_a_rule(self) -> None:
        rule = {
            "minimum_age": 15,
            "effective_from": instant(datetime.now(UTC) - timedelta(minutes=1)),
            "status": "in_force",
            "citation": "e2e drill: a made-up amendment",
            "change_reason": "end-to-end check",
        }
        status, body = self.s.http("PUT", "/v1/jurisdictions/SG", self.legal, rule)
        expect(status in (200, 201), f"PUT /v1/jurisdictions/SG: {status} {body}")
        expect(body["minimum_age"] == 15 and body["version"] >= 2, f"PUT answered {body}")
        ok(f"legal: PUT SG minimum age 15 (version {body['version']})")
        self._every_worker_applies("SG", 15)

    def _every_worker_applies(self, country: str, minimum_age: int) -> None:
        """Age checks (spread over the gunicorn workers) apply the new rule within seconds."""
        started = time.monotonic()
        streak = 0

        def settled() -> bool:
            nonlocal streak
            status, body = self.s.http(
                "POST", "/v1/age-checks", self.signup, {"age": 30, "country": country}
            )
            expect(status == 200, f"age check: {status} {body}")
            streak = streak + 1 if body["minimum_age"] == minimum_age else 0
            return streak >= 3 * WEB_WORKERS

        wait_for(
            f"every worker to apply {country} {minimum_age}", settled, timeout=15, interval=0.05
        )
        took = time.monotonic() - started
        ok(f"{3 * WEB_WORKERS} age checks in a row apply {country} {minimum_age} ({took:.1f} s)")

    def legal_imports(self) -> None:
        row = {
            "code": "JP",
            "minimum_age": 16,
            "effective_from": instant(datetime.now(UTC) - timedelta(minutes=1)),
            "status": "in_force",
            "citation": "e2e drill: a made-up amendment",
        }
        before = self._history("JP")
        path = "/v1/jurisdictions/import?change_reason=e2e&dry_run=true"
        status, body = self.s.http("POST", path, self.legal, {"rules": [row]})
        expect(status == 200 and body["dry_run"] is True, f"dry run: {status} {body}")
        expect([a["code"] for a in body["added"]] == ["JP"], f"dry run diff: {body}")
        expect(body["added"][0]["before"]["minimum_age"] == 13, f"dry run before: {body}")
        expect(self._history("JP") == before, "a dry run changed the table")
        ok("legal: import dry run shows JP 13 → 16 and changes nothing")

        bad = {"rules": [row, {**row, "code": "UK"}]}
        status, body = self.s.http(
            "POST", "/v1/jurisdictions/import?change_reason=e2e", self.legal, bad
        )
        expect(status == 422 and body["code"] == "import_rejected", f"bad import: {status} {body}")
        expect("rows.2.code" in body["errors"], f"bad import errors: {body['errors']}")
        expect(self._history("JP") == before, "a rejected import changed the table")
        ok("legal: an import with one bad row (UK) → 422 import_rejected, nothing changed")

        status, body = self.s.http(
            "POST", "/v1/jurisdictions/import?change_reason=e2e", self.legal, {"rules": [row]}
        )
        expect(status == 200 and len(body["added"]) == 1, f"import: {status} {body}")

        def imported() -> bool:  # every worker re-reads the table within seconds
            _, body = self.s.http("GET", "/v1/jurisdictions/JP", self.legal)
            return bool(body["current"]["minimum_age"] == 16)

        wait_for("GET /v1/jurisdictions/JP to show the import", imported, timeout=10)
        expect(self._history("JP") == before + 1, "the import did not add exactly one version")
        ok("legal: import adds JP 16 as a new version; history keeps the old one")

    def _history(self, code: str) -> int:
        status, body = self.s.http("GET", f"/v1/jurisdictions/{code}/history", self.legal)
        expect(status == 200, f"history of {code}: {status} {body}")
        return len(body["items"])

    # -- the signup flow -------------------------------------------------------------------
    def signup_checks_ages(self) -> None:
        allowed = self._check(
            {"date_of_birth": "1990-04-01", "country": "DE", "session_id": "e2e-s0"}
        )
        expect(
            allowed["outcome"] == "allowed" and allowed["reason"] == "meets_minimum_age",
            f"{allowed}",
        )
        expect(
            allowed["jurisdiction"]["code"] == "DE" and allowed["minimum_age"] == 16, f"{allowed}"
        )
        ok("signup: an adult in DE is allowed (rule DE, minimum 16)")

        child = years_ago(12)
        denied = self._check({"date_of_birth": child, "country": "DE", "session_id": "e2e-s1"})
        expect(
            denied["outcome"] == "denied" and denied["reason"] == "below_minimum_age", f"{denied}"
        )
        ok("signup: a 12-year-old in DE is denied (below_minimum_age)")
        time.sleep(0.2)  # a person going back to type another date takes longer than this
        for _ in range(2 * WEB_WORKERS):  # whichever worker answers
            retry = self._check(
                {"date_of_birth": "1990-04-01", "country": "DE", "session_id": "e2e-s1"}
            )
            expect(
                retry["reason"] == "prior_underage_declaration", f"neutral-screen retry: {retry}"
            )
        ok(f"signup: {2 * WEB_WORKERS} retries of that session with an adult date are denied")

        for body, code in (
            ({"date_of_birth": "2013-02-29"}, "date_of_birth_impossible"),
            ({"date_of_birth": "2999-01-01"}, "date_of_birth_in_future"),
            ({"date_of_birth": "1990-04-01", "age": 30}, "both_date_of_birth_and_age"),
            ({"country": "DE"}, "date_of_birth_or_age_required"),
            ({"age": 30, "country": "UK"}, "unknown_code"),
        ):
            status, answer = self.s.http("POST", "/v1/age-checks", self.signup, body)
            expect(status == 422 and answer.get("code") == code, f"{body}: {status} {answer}")
            dob = str(body.get("date_of_birth", "\0"))
            expect(dob not in json.dumps(answer), f"the error body repeats the date: {answer}")
        ok(
            "signup: bad input → 422 with its code (impossible, future, both, neither, UK); no date echoed"
        )

        flagged = self._check(
            {"date_of_birth": child, "country": "DE", "account_id": "e2e-child-3"}
        )
        expect(flagged["outcome"] == "denied", f"account check: {flagged}")
        status, cases = self.s.http("GET", "/v1/cases?account_id=e2e-child-3", self.ts)
        expect(status == 200 and len(cases["items"]) == 1, f"cases of e2e-child-3: {cases}")
        case = cases["items"][0]
        expect(case["confidence"] == "suspected", f"an age check's flag is suspected: {case}")
        ok("signup: a denied account (e2e-child-3) is flagged and opens a suspected case")

    def _check(self, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = self.s.http("POST", "/v1/age-checks", self.signup, body)
        expect(status == 200, f"age check {body}: {status} {answer}")
        return answer  # type: ignore[no-any-return]

    # -- trust and safety ------------------------------------------------------------------
    def trust_and_safety_flags(self) -> dict[str, str]:
        """Flag, hold, expedite and dismiss; returns the case id of each account."""
        status, hold = self.s.http(
            "POST",
            "/v1/accounts/e2e-child-2/legal-holds",
            self.legal,
            {"reason": "e2e: preserve media for an inquiry", "targets": ["media"]},
        )
        expect(status == 201, f"legal hold: {status} {hold}")
        ok("legal: holds e2e-child-2's media")

        flag = {"reason": "user_report", "confidence": "confirmed", "evidence": "ticket:E2E-1"}
        idem = {"Idempotency-Key": "e2e-flag-child-1"}
        path = "/v1/accounts/e2e-child-1/flags"
        first = self.s.http("POST", path, self.ts, flag, headers=idem)
        expect(first[0] == 201, f"flag e2e-child-1: {first}")
        expect(
            self.s.http("POST", path, self.ts, flag, headers=idem) == first,
            "replayed key: another answer",
        )
        reused = self.s.http(
            "POST", path, self.ts, {**flag, "evidence": "ticket:E2E-2"}, headers=idem
        )
        expect(reused[0] == 422 and reused[1]["code"] == "idempotency_key_reused", f"{reused}")
        ok("ts: flag e2e-child-1 (201); the same Idempotency-Key replays it; another body → 422")

        cases = {"e2e-child-1": first[1]["case"]["id"]}
        for account, reason in (("e2e-child-2", "parental_request"), ("e2e-adult-2", "classifier")):
            confidence = "suspected" if account == "e2e-adult-2" else "confirmed"
            status, body = self.s.http(
                "POST",
                f"/v1/accounts/{account}/flags",
                self.ts,
                {"reason": reason, "confidence": confidence},
            )
            expect(status == 201, f"flag {account}: {status} {body}")
            cases[account] = body["case"]["id"]
        status, listed = self.s.http("GET", "/v1/cases?account_id=e2e-child-3", self.ts)
        cases["e2e-child-3"] = listed["items"][0]["id"]
        self.steer(cases["e2e-child-3"], "expedite", "e2e: confirmed by review")
        body = self.steer(cases["e2e-adult-2"], "dismiss", "e2e: adult verified")
        expect(body["state"] == "dismissed", f"dismiss: {body}")
        ok("ts: flag e2e-child-2 and e2e-adult-2, expedite e2e-child-3, dismiss e2e-adult-2")

        held = self.wait_for_state(cases["e2e-child-2"], "on_hold")
        counts = self.platform.counts("e2e-child-2")
        expect(counts == (0, expected_files("e2e-child-2")), f"on hold, (rows, files) = {counts}")
        expect(
            {t["name"]: t["state"] for t in held["targets"]}["media"] == "held",
            f"{held['targets']}",
        )
        ok("e2e-child-2 waits on_hold: its rows are purged, its held media kept")
        status, body = self.s.http("DELETE", f"/v1/legal-holds/{hold['id']}", self.legal)
        expect(status == 200 and body["released_at"], f"release: {status} {body}")
        ok("legal: releases the hold")

        for account in CHILDREN:
            self.wait_for_state(cases[account], "completed")
        ok("every child's case completed")
        return cases

    def steer(self, case_id: str, action: str, reason: str) -> dict[str, Any]:
        """POST /v1/cases/{id}/{action}; a worker may be stepping the case at that moment, and
        the answer is then 409 concurrent_change: a client reads it again and retries."""
        for _ in range(10):
            path = f"/v1/cases/{case_id}/{action}"
            status, body = self.s.http("POST", path, self.ts, {"reason": reason})
            if status != 409 or body.get("code") != "concurrent_change":
                expect(status == 200, f"{action}: {status} {body}")
                return body  # type: ignore[no-any-return]
            time.sleep(0.05)
        raise Mismatch(f"{action} of case {case_id}: 409 concurrent_change ten times in a row")

    def wait_for_state(self, case_id: str, state: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            self.s.check_alive()
            status, case = self.s.http("GET", f"/v1/cases/{case_id}", self.ts)
            expect(status == 200, f"case {case_id}: {status} {case}")
            expect(case["state"] != "failed", f"case {case_id} failed: {case.get('last_error')}")
            return case if case["state"] == state else None

        return wait_for(f"case {case_id} to be {state}", reached, timeout=45, interval=0.2)  # type: ignore[no-any-return]

    # -- receipts --------------------------------------------------------------------------
    def receipts_verify(self, cases: dict[str, str], workdir: Path) -> None:
        status, jwks = self.s.http("GET", "/v1/receipts/public-key")
        expect(status == 200 and jwks["keys"], f"JWKS: {status} {jwks}")
        keys = {k["kid"]: k for k in jwks["keys"]}
        for account in CHILDREN:
            status, document = self.s.http("GET", f"/v1/cases/{cases[account]}/receipt", self.ts)
            expect(status == 200, f"receipt of {account}: {status} {document}")
            expect(verify_receipt(document, keys), f"the receipt of {account} does not verify")
            tampered = json.loads(json.dumps(document))
            tampered["receipt"]["targets"][0]["purged"] += 1
            expect(not verify_receipt(tampered, keys), "a changed receipt still verifies")
            receipt = document["receipt"]
            counts = {
                t["name"]: (t["found"], t["purged"], t["remaining"]) for t in receipt["targets"]
            }
            rows, files = expected_rows(account), expected_files(account)
            expect(
                counts == {"platform-db": (rows, rows, 0), "media": (files, files, 0)},
                f"receipt counts of {account}: {counts}, seeded {rows} rows and {files} files",
            )
            expect(receipt["account_id"] == account, f"receipt names {receipt['account_id']}")
        ok(
            "3 receipts verify against the JWKS (Ed25519); counts = what was seeded; a changed one fails"
        )
        path = workdir / "receipt.json"
        path.write_text(
            json.dumps(self.s.http("GET", f"/v1/cases/{cases['e2e-child-1']}/receipt", self.ts)[1])
        )
        done = self.s.cli(
            "receipts", "verify", str(path), "--jwks", f"{self.s.base_url}/v1/receipts/public-key"
        )
        expect("receipt verifies" in done.stdout, f"agegate receipts verify: {done.stdout}")
        ok("`agegate receipts verify --jwks URL` agrees")

    # -- the platform ----------------------------------------------------------------------
    def platform_state(self, bystanders: dict[str, Snapshot]) -> None:
        for account in CHILDREN:
            expect(self.platform.counts(account) == (0, 0), f"{account} still has data")
        for account, before in bystanders.items():
            expect(self.platform.snapshot(account) == before, f"bystander {account} was changed")
        ok(f"children's rows and files are gone; bystanders {', '.join(bystanders)} byte-identical")

    def audit_intact(self) -> None:
        done = self.s.cli("audit", "verify")
        expect("audit chain intact" in done.stdout, f"audit verify: {done.stdout}")
        ok(f"`agegate audit verify`: {done.stdout.strip()}")

    # -- the restore drill -----------------------------------------------------------------
    def restore_drill(self, since: datetime, backup: Snapshot, cases: dict[str, str]) -> None:
        account = "e2e-child-1"
        self.platform.restore(account, backup)
        expect(
            self.platform.counts(account) == (expected_rows(account), expected_files(account)),
            "the restore did not bring the rows and files back",
        )
        ok(
            f"restore: {account}'s {expected_rows(account)} rows and {expected_files(account)} files are back"
        )

        bad = self.s.cli("cases", "replay", "--since", "last-tuesday", check=False)
        expect(
            bad.returncode == 2 and "Invalid value for '--since'" in bad.stderr, f"bad date: {bad}"
        )
        first = self.s.cli("cases", "replay", "--since", instant(since))
        rows, files = expected_rows(account), expected_files(account)
        block = case_block(first.stdout, cases[account])
        expect(f"platform-db sql: found {rows}, purged {rows}, remaining 0" in block, first.stdout)
        expect(f"media files: found {files}, purged {files}, remaining 0" in block, first.stdout)
        for other in ("e2e-child-2", "e2e-child-3"):
            expect("found 0, purged 0" in case_block(first.stdout, cases[other]), first.stdout)
        expect("3 re-verified, 1 had data again" in first.stdout, first.stdout)
        expect(self.platform.counts(account) == (0, 0), "replay left data behind")
        ok(
            f"`agegate cases replay --since` re-purged {rows} rows and {files} files of {account} only"
        )

        again = self.s.cli("cases", "replay", "--since", instant(since))
        expect("0 had data again (0 item(s) purged)" in again.stdout, again.stdout)
        _, case = self.s.http("GET", f"/v1/cases/{cases[account]}", self.ts)
        replays = [e for e in case["timeline"] if e["event"] == "case.replayed"]
        expect(len(replays) == 2, f"timeline of {account}: {case['timeline'][-3:]}")
        ok("a second replay finds nothing; the case's timeline shows both replays")


def case_block(output: str, case_id: str) -> str:
    """The lines `agegate cases replay` printed for one case."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"case {case_id} ")), None)
    if start is None:
        raise Mismatch(f"the replay did not report case {case_id}:\n{output}")
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line)
    return "\n".join(block)


def verify_receipt(document: dict[str, Any], keys: dict[str, dict[str, Any]]) -> bool:
    """The contract, checked independently of agegate's code: Ed25519 over sorted-key,
    whitespace-free UTF-8 JSON, base64url without padding."""
    key = keys.get(document["kid"])
    if key is None or key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
        return False
    canonical = json.dumps(
        document["receipt"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    public = Ed25519PublicKey.from_public_bytes(unpadded_b64(key["x"]))
    try:
        public.verify(unpadded_b64(document["signature"]), canonical)
    except InvalidSignature:
        return False
    return True


def unpadded_b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
