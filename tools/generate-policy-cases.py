#!/usr/bin/env python3
"""The DMP policy table: patient spaces and the cases run against them.

Writes test-data/policy/spaces.json (the resources, stored in order through
the open API) and test-data/policy/cases.json (callers, and per case: the
request, the expected status, the rule named by a 403, and for 200 searches
the exact Type/id set returned). tests/server/policy/policy_table_test.cpp
runs them through the real FhirApi, SQLite store, tokens and rules.

The expected answers come from `Oracle` below: a plain, separate reading of
the rules as server/policy/README.md states them (no server code is run).
Deterministic.
"""
import json
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test-data", "policy")
CONF = "urn:oid:1.2.250.1.213.1.1.4.13"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"
INS = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
EXT = "https://espace.example/fhir/StructureDefinition/"
NOW = "2026-06-01"  # the rules' clock in the test
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# ---------------------------------------------------------------- the spaces

resources = []  # in load order


def add(r):
    resources.append(r)
    return r


def labels(codes):
    return {"security": [{"system": CONF, "code": c} for c in codes]} if codes else None


PRACTITIONERS = {  # id -> RPPS
    "dr-gp": "810000000001", "dr-granted": "810000000002", "dr-blocked": "810000000003",
    "dr-stranger": "810000000004", "pharm": "810000000005", "nurse": "810000000006",
    "dr-expired": "810000000007", "dr-emergency": "810000000008", "kine": "810000000009",
}
for pid, rpps in PRACTITIONERS.items():
    add({"resourceType": "Practitioner", "id": pid, "identifier": [{"system": RPPS, "value": rpps}],
         "name": [{"family": pid.replace("-", " ").title()}]})
ORGS = {"hosp-1": "010000001", "clinic-2": "020000002"}
for oid, finess in ORGS.items():
    add({"resourceType": "Organization", "id": oid, "identifier": [{"system": FINESS, "value": finess}],
         "name": oid})
add({"resourceType": "Medication", "id": "med-1",
     "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "N02BE01"}]}})
add({"resourceType": "Task", "id": "task-1", "status": "requested", "intent": "order",
     "for": {"reference": "Patient/pat-a"}})

# Patients: id -> facts used by the oracle as well.
PATIENTS = {}


def patient(pid, birth, gp=None, state=None, btg_opposed=False, heirs_forbidden=False, deceased=False):
    r = {"resourceType": "Patient", "id": pid, "birthDate": birth,
         "identifier": [{"system": INS, "value": "1" + str(abs(hash(pid)) % 10**12).zfill(12)}],
         "name": [{"family": pid}]}
    ext = []
    if state:
        ext.append({"url": EXT + "dmp-account-state", "valueCode": state})
    if btg_opposed:
        ext.append({"url": EXT + "dmp-break-glass-opposition", "valueBoolean": True})
    if heirs_forbidden:
        ext.append({"url": EXT + "dmp-heirs-access-forbidden", "valueBoolean": True})
    if ext:
        r["extension"] = ext
    if gp:
        r["generalPractitioner"] = [{"reference": "Practitioner/" + gp}]
    if deceased:
        r["deceasedBoolean"] = True
    PATIENTS[pid] = {"birth": birth, "gp": gp, "state": state or ("deceased" if deceased else "active"),
                     "btg_opposed": btg_opposed, "heirs_forbidden": heirs_forbidden,
                     "deceased": deceased or state == "deceased", "consents": []}
    return add(r)


# INS values must be stable across runs: hash() of str is salted, so fix them.
def fix_ins():
    n = 0
    for r in resources:
        if r["resourceType"] == "Patient":
            n += 1
            r["identifier"][0]["value"] = "2%012d" % (8500000000 + n)


patient("pat-a", "1980-04-12", gp="dr-gp")
patient("pat-b", "1975-09-30", btg_opposed=True)
patient("pat-c", "2015-03-01", gp="dr-gp")           # a minor
patient("pat-d", "2000-01-15")                        # of age: representation ended
patient("pat-e", "1960-02-02", gp="dr-gp", state="closed")
patient("pat-f", "1990-07-07", gp="dr-gp", state="opposed")
patient("pat-g", "1940-01-01", gp="dr-gp", deceased=True)
patient("pat-h", "1945-05-05", gp="dr-gp", deceased=True, heirs_forbidden=True)
patient("pat-x", "1950-05-05", gp="dr-gp", state="destroyed")
fix_ins()

add({"resourceType": "CareTeam", "id": "team-a", "status": "active", "subject": {"reference": "Patient/pat-a"},
     "participant": [{"member": {"reference": "Practitioner/nurse"}}]})


def consent(cid, pid, kind, actor, start=None, end=None):
    provision = {"type": kind, "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                                          "reference": actor}]}
    if start or end:
        provision["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    add({"resourceType": "Consent", "id": cid, "status": "active",
         "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
         "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
         "patient": {"reference": "Patient/" + pid}, "provision": provision})
    PATIENTS[pid]["consents"].append({"id": cid, "permit": kind == "permit", "actor": actor, "start": start, "end": end})


consent("consent-a-granted", "pat-a", "permit", {"reference": "Practitioner/dr-granted"})
consent("consent-a-pharm", "pat-a", "permit", {"identifier": {"system": RPPS, "value": PRACTITIONERS["pharm"]}})
consent("consent-a-team", "pat-a", "permit", {"reference": "CareTeam/team-a"})
consent("consent-a-hosp", "pat-a", "permit", {"identifier": {"system": FINESS, "value": ORGS["hosp-1"]}})
consent("consent-a-kine", "pat-a", "permit", {"reference": "Practitioner/kine"})
consent("consent-a-block", "pat-a", "deny", {"reference": "Practitioner/dr-blocked"})
consent("consent-a-expired", "pat-a", "permit", {"reference": "Practitioner/dr-expired"}, "2024-01-01", "2025-12-31")
consent("consent-b-future", "pat-b", "permit", {"reference": "Practitioner/dr-granted"}, "2027-01-01")
consent("consent-c-granted", "pat-c", "permit", {"reference": "Practitioner/dr-granted"})
consent("consent-g-granted", "pat-g", "permit", {"reference": "Practitioner/dr-granted"})
# The minor opposes one of the two representatives.
consent("consent-c-block-rep", "pat-c", "deny", {"reference": "RelatedPerson/rep-c2"})
# Inactive consents grant nothing.
add({"resourceType": "Consent", "id": "consent-b-draft", "status": "draft",
     "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
     "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
     "patient": {"reference": "Patient/pat-b"},
     "provision": {"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]}, "reference": {"reference": "Practitioner/dr-stranger"}}]}})
PATIENTS["pat-b"]["consents"].append({"id": "consent-b-draft", "permit": True, "inactive": True,
                                      "actor": {"reference": "Practitioner/dr-stranger"}})


def obs(oid, pid, codes=()):
    r = {"resourceType": "Observation", "id": oid, "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "29463-7"}]}, "subject": {"reference": "Patient/" + pid},
         "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
    if codes:
        r["meta"] = labels(codes)
    return add(r)


def simple(rtype, rid, pid, field="patient", **extra):
    r = {"resourceType": rtype, "id": rid, field: {"reference": "Patient/" + pid}}
    r.update(extra)
    return add(r)


def docref(did, pid, loinc, author, codes=()):
    r = {"resourceType": "DocumentReference", "id": did, "status": "current",
         "type": {"coding": [{"system": LOINC, "code": loinc}]}, "subject": {"reference": "Patient/" + pid},
         "author": [{"reference": "Practitioner/" + author}],
         "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/bin-" + did}}]}
    if codes:
        r["securityLabel"] = [{"coding": [{"system": CONF, "code": c}]} for c in codes]
    return add(r)


def binary(did):
    return add({"resourceType": "Binary", "id": "bin-" + did, "contentType": "text/plain",
                "securityContext": {"reference": "DocumentReference/" + did}, "data": "SGVsbG8="})


obs("obs-a1", "pat-a")
obs("obs-a-invis", "pat-a", ["INVISIBLE_PATIENT"])
simple("Condition", "cond-a1", "pat-a", field="subject",
       code={"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]})
simple("MedicationRequest", "medreq-a1", "pat-a", field="subject", status="active", intent="order",
       medicationReference={"reference": "Medication/med-1"})
simple("AllergyIntolerance", "allergy-a1", "pat-a",
       code={"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]})
simple("Immunization", "imm-a1", "pat-a", status="completed",
       vaccineCode={"coding": [{"system": "urn:oid:1.2.250.1.213.2.3.1", "code": "VAC1"}]},
       occurrenceDateTime="2024-10-01")
simple("Encounter", "enc-a1", "pat-a", field="subject", status="finished",
       **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}})
docref("doc-a-consult", "pat-a", "11488-4", "dr-granted")
docref("doc-a-rx", "pat-a", "57833-6", "dr-gp")
docref("doc-a-psy", "pat-a", "75474-7", "dr-granted")
docref("doc-a-masked", "pat-a", "11502-2", "dr-granted", ["MASQUE_PS"])
docref("doc-a-invis", "pat-a", "18842-5", "dr-gp", ["INVISIBLE_PATIENT"])
binary("doc-a-consult")
binary("doc-a-masked")
binary("doc-a-psy")
add({"resourceType": "Binary", "id": "bin-orphan", "contentType": "text/plain", "data": "SGVsbG8="})
obs("obs-b1", "pat-b")
docref("doc-b1", "pat-b", "11488-4", "dr-stranger")
obs("obs-c1", "pat-c")
docref("doc-c-plain", "pat-c", "11488-4", "dr-gp")
docref("doc-c-inv-rep", "pat-c", "11488-4", "dr-gp", ["INVISIBLE_REPRESENTANTS_LEGAUX"])
obs("obs-d1", "pat-d")
obs("obs-e1", "pat-e")
obs("obs-f1", "pat-f")
obs("obs-g1", "pat-g")
obs("obs-h1", "pat-h")
obs("obs-x1", "pat-x")

BY_ID = {(r["resourceType"], r["id"]): r for r in resources}

# ---------------------------------------------------------------- callers

CALLERS = {
    "pat-a": {"role": "patient", "patient": "pat-a", "fhir_user": "Patient/pat-a"},
    "pat-b": {"role": "patient", "patient": "pat-b"},
    "pat-e": {"role": "patient", "patient": "pat-e"},
    "rep-c": {"role": "legal-representative", "fhir_user": "RelatedPerson/rep-c", "represents": ["pat-c"]},
    "rep-c2": {"role": "legal-representative", "fhir_user": "RelatedPerson/rep-c2", "represents": ["pat-c"]},
    "rep-d": {"role": "legal-representative", "fhir_user": "RelatedPerson/rep-d", "represents": ["pat-d"]},
    "heir-g": {"role": "legal-representative", "fhir_user": "RelatedPerson/heir-g", "represents": ["pat-g"]},
    "heir-h": {"role": "legal-representative", "fhir_user": "RelatedPerson/heir-h", "represents": ["pat-h"]},
    "dr-gp": {"role": "professional", "fhir_user": "Practitioner/dr-gp", "national_id": PRACTITIONERS["dr-gp"], "profession": "10"},
    "dr-granted": {"role": "professional", "fhir_user": "Practitioner/dr-granted", "national_id": PRACTITIONERS["dr-granted"], "profession": "10"},
    "dr-blocked": {"role": "professional", "fhir_user": "Practitioner/dr-blocked", "national_id": PRACTITIONERS["dr-blocked"], "profession": "10",
                   "organization": ORGS["hosp-1"]},
    "dr-stranger": {"role": "professional", "fhir_user": "Practitioner/dr-stranger", "national_id": PRACTITIONERS["dr-stranger"], "profession": "10"},
    "dr-expired": {"role": "professional", "fhir_user": "Practitioner/dr-expired", "national_id": PRACTITIONERS["dr-expired"], "profession": "10"},
    "dr-emergency": {"role": "professional", "fhir_user": "Practitioner/dr-emergency", "national_id": PRACTITIONERS["dr-emergency"], "profession": "10",
                     "purpose": "ETREAT"},
    "pharm": {"role": "professional", "national_id": PRACTITIONERS["pharm"], "profession": "21"},
    "nurse": {"role": "professional", "fhir_user": "Practitioner/nurse", "national_id": PRACTITIONERS["nurse"], "profession": "60"},
    "kine": {"role": "professional", "fhir_user": "Practitioner/kine", "national_id": PRACTITIONERS["kine"], "profession": "70"},
    "hosp-system": {"role": "system", "organization": ORGS["hosp-1"]},
    "admin": {"role": "administrator"},
    "dr-research": {"role": "professional", "fhir_user": "Practitioner/dr-granted", "national_id": PRACTITIONERS["dr-granted"], "profession": "10",
                    "purpose": "HRESCH"},
    "dr-scoped": {"role": "professional", "fhir_user": "Practitioner/dr-granted", "national_id": PRACTITIONERS["dr-granted"], "profession": "10",
                  "scope": "user/Observation.rs user/Patient.r"},
    "dr-launch": {"role": "professional", "fhir_user": "Practitioner/dr-granted", "national_id": PRACTITIONERS["dr-granted"], "profession": "10",
                  "scope": "patient/*.rs", "patient": "pat-a"},
}
for name, c in CALLERS.items():
    c["subject"] = "account-" + name

# ---------------------------------------------------------------- the oracle

HABILITATIONS = json.load(open(os.path.join(ROOT, "server", "policy", "data", "habilitations.json")))["professions"]
ROLES = json.load(open(os.path.join(ROOT, "server", "policy", "data", "roles.json")))
PURPOSES = json.load(open(os.path.join(ROOT, "server", "policy", "data", "purposes.json")))["roles"]
SHARED = set(ROLES["shared_types"])
ADMIN_TYPES = set(ROLES["administrator_types"])
# Patient-compartment link of each type used here (CompartmentDefinition-patient).
PATIENT_FIELD = {"Observation": "subject", "Condition": "subject", "MedicationRequest": "subject",
                 "AllergyIntolerance": "patient", "Immunization": "patient", "Encounter": "subject",
                 "DocumentReference": "subject", "Consent": "patient", "CareTeam": "subject"}


def ref_id(ref, rtype):
    r = ref.get("reference", "")
    return r[len(rtype) + 1:] if r.startswith(rtype + "/") else None


def owners(r):
    t = r["resourceType"]
    if t == "Patient":
        return [r["id"]]
    f = PATIENT_FIELD.get(t)
    if f and f in r:
        p = ref_id(r[f], "Patient")
        return [p] if p else []
    return []


def actor_is(caller, actor):
    """Does a Consent actor / generalPractitioner / author name this caller?"""
    if "identifier" in actor:
        i = actor["identifier"]
        if i["system"] == RPPS and i["value"] == caller.get("national_id"):
            return True
        if i["system"] == FINESS and i["value"] == caller.get("organization"):
            return True
    ref = actor.get("reference")
    if not ref:
        return False
    if ref == caller.get("fhir_user"):
        return True
    t, _, i = ref.partition("/")
    if t == "Practitioner":
        return caller.get("national_id") is not None and PRACTITIONERS.get(i) == caller.get("national_id")
    if t == "Organization":
        return caller.get("organization") is not None and ORGS.get(i) == caller.get("organization")
    if t == "CareTeam":
        team = BY_ID.get(("CareTeam", i))
        return bool(team) and any(actor_is(caller, p["member"]) for p in team["participant"])
    return False


def active(c):
    if c.get("inactive"):
        return False
    return (not c.get("start") or c["start"] <= NOW) and (not c.get("end") or NOW <= c["end"])


def minor(pid):
    b = PATIENTS[pid]["birth"]
    return "%04d%s" % (int(b[:4]) + 18, b[4:]) > NOW


def purpose(caller):
    return caller.get("purpose") or PURPOSES[caller["role"]]["default"]


def patient_access(caller, pid):
    """(visible, rule) for the caller and this patient's record as a whole."""
    role = caller["role"]
    if role == "administrator":
        return False, "ADMIN_NO_CLINICAL"
    if role == "patient":
        if pid != caller["patient"]:
            return False, "OTHER_PATIENT"
        if pid in PATIENTS and PATIENTS[pid]["state"] == "destroyed":
            return False, "ACCOUNT_DESTROYED"
        return True, "OWN"
    if role == "legal-representative" and pid not in caller["represents"]:
        return False, "OTHER_PATIENT"
    p = PATIENTS.get(pid)
    if p is None:
        return False, "NO_GRANT"
    if p["state"] in ("destroyed", "opposed", "closed"):
        return False, "ACCOUNT_" + p["state"].upper()
    named = [c for c in p["consents"] if active(c) and actor_is(caller, c["actor"])]
    if any(not c["permit"] for c in named):
        return False, "BLOCKED"
    if role == "legal-representative":
        if p["deceased"]:
            return (False, "HEIRS_FORBIDDEN") if p["heirs_forbidden"] else (True, "HEIR")
        return (True, "REPRESENTATIVE") if minor(pid) else (False, "REPRESENTATION_ENDED")
    if p["gp"] and actor_is(caller, {"reference": "Practitioner/" + p["gp"]}):
        return True, "GP"
    if named:
        return True, "GRANT"
    if purpose(caller) == "ETREAT":
        return (False, "BREAK_GLASS_OPPOSED") if p["btg_opposed"] else (True, "BREAK_GLASS")
    return False, "NO_GRANT"


def profession(caller):
    return caller.get("profession") or ("system" if caller["role"] == "system" else "")


def scope_grants(caller, rtype, perm):
    """The contexts ("patient", "user", "system") of the scopes giving perm on rtype; None without scopes."""
    if "scope" not in caller:
        return None
    out = []
    for s in caller["scope"].split():
        ctx, _, rest = s.partition("/")
        t, _, perms = rest.partition(".")
        if t in ("*", rtype) and perm in perms:
            out.append(ctx)
    return out


def scope_allows(caller, rtype, perm):
    g = scope_grants(caller, rtype, perm)
    return g is None or len(g) > 0


def launch_only(caller, rtype, perms):
    """True when every scope giving any of perms on rtype is a patient/ scope."""
    gs = [scope_grants(caller, rtype, p) for p in perms]
    if any(g is None for g in gs):
        return False
    given = [g for g in gs if g]
    return bool(given) and all(all(c == "patient" for c in g) for g in given)


def sec_codes(r):
    codes = [c["code"] for c in r.get("meta", {}).get("security", []) if c["system"] == CONF]
    for cc in r.get("securityLabel", []):
        codes += [c["code"] for c in cc["coding"] if c["system"] == CONF]
    return codes


def visible(caller, r):
    """(visible, rule) for one stored resource."""
    role, t = caller["role"], r["resourceType"]
    if role == "administrator":
        return (True, "ADMIN_CONFORMANCE") if t in ADMIN_TYPES else (False, "ADMIN_NO_CLINICAL")
    if not scope_allows(caller, t, "r") and not scope_allows(caller, t, "s"):
        return False, "SCOPE"
    if t == "Binary":
        ctx = r.get("securityContext", {}).get("reference", "")
        if ctx.startswith("DocumentReference/"):
            return visible(caller, BY_ID[("DocumentReference", ctx.split("/")[1])])
        return (True, "SYSTEM") if role == "system" else (False, "BINARY_UNBOUND")
    if t in SHARED:
        return True, "SHARED"
    os_ = owners(r)
    if not os_:
        return (True, "SYSTEM") if role == "system" else (False, "SYSTEM_ONLY" if t == "Task" else "NO_PATIENT_LINK")
    decided = None
    for pid in os_:
        if launch_only(caller, t, "rs") and pid != caller.get("patient"):
            return False, "SCOPE"
        ok, why = patient_access(caller, pid)
        if not ok:
            return False, why
        decided = decided or why
        if role == "patient" and t != "Patient" and PATIENTS[pid]["state"] in ("closed", "opposed"):
            return False, "ACCOUNT_" + PATIENTS[pid]["state"].upper()
    codes = sec_codes(r)
    if role == "patient":
        if "INVISIBLE_PATIENT" in codes:
            return False, "INVISIBLE_PATIENT"
    elif role == "legal-representative":
        if "INVISIBLE_PATIENT" in codes:
            return False, "INVISIBLE_PATIENT"
        if "INVISIBLE_REPRESENTANTS_LEGAUX" in codes:
            return False, "INVISIBLE_REPRESENTANTS_LEGAUX"
    else:
        row = HABILITATIONS.get(profession(caller))
        if not row or ("*" not in row["resource_types"] and t not in row["resource_types"]):
            return False, "HABILITATION"
        if t == "DocumentReference":
            loinc = [c["code"] for c in r["type"]["coding"] if c["system"] == LOINC]
            if "*" not in row["document_types"] and not set(loinc) & set(row["document_types"]):
                return False, "HABILITATION"
        if "MASQUE_PS" in codes:
            if any(actor_is(caller, a) for a in r.get("author", [])):
                decided = "AUTHOR"
            elif all(PATIENTS[p]["gp"] and actor_is(caller, {"reference": "Practitioner/" + PATIENTS[p]["gp"]}) for p in os_):
                decided = "GP"
            else:
                return False, "MASKED"
    return True, decided


def request_level(caller, rtype, interaction, named):
    """Request-level refusal (status, rule) or None, then patient-level on named patients."""
    role = caller["role"]
    allowed = PURPOSES[role]["allowed"]
    if purpose(caller) not in allowed:
        return 403, "NON_CARE_PURPOSE"
    writes = interaction in ("create", "update", "delete")
    if rtype == "AuditEvent" and writes:
        return 405, "AUDIT_SERVER_ONLY"
    if rtype == "AuditEvent" and role not in ("patient", "legal-representative"):
        return 403, "AUDIT_PATIENT_ONLY"
    if role == "administrator":
        if interaction == "capabilities":
            return None
        if interaction in ("read", "search") and rtype in ADMIN_TYPES and not named:
            return None
        return 403, "ADMIN_NO_CLINICAL"
    perm = {"read": "r", "search": "s", "create": "c", "update": "u", "delete": "d"}.get(interaction)
    if perm and not scope_allows(caller, rtype, perm):
        return 403, "SCOPE"
    if perm and launch_only(caller, rtype, perm) and any(p != caller.get("patient") for p in named):
        return 403, "SCOPE"
    return None


PATIENT_LEVEL = {"BLOCKED", "BREAK_GLASS_OPPOSED", "ACCOUNT_OPPOSED", "ACCOUNT_CLOSED", "ACCOUNT_DESTROYED", "NO_GRANT"}


def told(caller, why):
    """What a refusal tells the caller: professionals and systems learn nothing of the record
    (every patient-level refusal reads NO_GRANT, as for a patient never written); a representative
    is not told of a minor's opposition."""
    if why in PATIENT_LEVEL and caller["role"] in ("professional", "system"):
        return "NO_GRANT"
    if why == "BLOCKED" and caller["role"] == "legal-representative":
        return "NO_GRANT"
    return why


def expect_patient_level(caller, named, rtype=None, writing=False):
    for pid in named:
        ok, why = patient_access(caller, pid)
        if not ok:
            if caller["role"] == "system" and rtype == "Patient" and writing and pid not in PATIENTS:
                continue
            return 403, told(caller, why)
    return None

# ---------------------------------------------------------------- the cases

cases = []


def case(name, caller, method, path, expect, rule=None, ids=None, body=None, note=None):
    c = {"name": name, "caller": caller, "method": method, "path": path, "status": expect}
    if rule:
        c["rule"] = rule
    if ids is not None:
        c["ids"] = sorted(ids)
    if body is not None:
        c["body"] = body
    cases.append(c)


STORED = [r for r in resources]

# 1. Read of every stored resource by every caller.
for cname, caller in CALLERS.items():
    for r in STORED:
        t, i = r["resourceType"], r["id"]
        named = [i] if t == "Patient" else []
        refused = request_level(caller, t, "read", named) or expect_patient_level(caller, named)
        if refused:
            case("read %s/%s as %s" % (t, i, cname), cname, "GET", "/%s/%s" % (t, i), refused[0], rule=refused[1])
            continue
        ok, why = visible(caller, r)
        case("read %s/%s as %s (%s)" % (t, i, cname, why), cname, "GET", "/%s/%s" % (t, i), 200 if ok else 404)

# 1b. vread and instance history answer as the read does (hidden == absent).
HISTORY_SAMPLE = [("Observation", "obs-a1"), ("Observation", "obs-a-invis"), ("DocumentReference", "doc-a-masked"),
                  ("DocumentReference", "doc-a-psy"), ("DocumentReference", "doc-c-inv-rep"), ("Binary", "bin-doc-a-masked"),
                  ("Observation", "obs-b1"), ("Observation", "obs-e1"), ("Task", "task-1")]
for cname, caller in CALLERS.items():
    for t, i in HISTORY_SAMPLE:
        r = BY_ID[(t, i)]
        refused = request_level(caller, t, "read", [])
        if refused:
            case("vread %s/%s as %s" % (t, i, cname), cname, "GET", "/%s/%s/_history/1" % (t, i), refused[0], rule=refused[1])
            case("history %s/%s as %s" % (t, i, cname), cname, "GET", "/%s/%s/_history" % (t, i), refused[0], rule=refused[1])
            continue
        ok, why = visible(caller, r)
        case("vread %s/%s as %s (%s)" % (t, i, cname, why), cname, "GET", "/%s/%s/_history/1" % (t, i), 200 if ok else 404)
        case("history %s/%s as %s (%s)" % (t, i, cname, why), cname, "GET", "/%s/%s/_history" % (t, i),
             200 if ok else 404, ids=["%s/%s" % (t, i)] if ok else None)
    # Type-level history: professionals cannot name a patient there.
    refused = request_level(caller, "Observation", "search", [])
    if not refused and caller["role"] in ("professional", "system"):
        refused = (403, "PATIENT_CONTEXT_REQUIRED")
    if refused:
        case("history Observation as " + cname, cname, "GET", "/Observation/_history", refused[0], rule=refused[1])
    else:
        ids = ["Observation/" + r["id"] for r in STORED if r["resourceType"] == "Observation" and visible(caller, r)[0]]
        case("history Observation as " + cname, cname, "GET", "/Observation/_history", 200, ids=ids)

# 2. Reads of ids never written: the same answers as hidden ones.
for cname, caller in CALLERS.items():
    refused = request_level(caller, "Observation", "read", [])
    case("read unknown Observation as " + cname, cname, "GET", "/Observation/never-written",
         refused[0] if refused else 404, rule=refused[1] if refused else None)
    refused = request_level(caller, "Patient", "read", ["pat-unknown"]) or expect_patient_level(caller, ["pat-unknown"])
    case("read unknown Patient as " + cname, cname, "GET", "/Patient/pat-unknown",
         refused[0] if refused else 404, rule=refused[1] if refused else None)


def search_expect(cname, caller, rtype, named, compartment_of_caller=False):
    """Expected (status, rule, ids) of a search of rtype naming `named` patients."""
    refused = request_level(caller, rtype, "search", named)
    if refused:
        return refused[0], refused[1], None
    role = caller["role"]
    member = rtype not in SHARED and rtype != "Task" and rtype != "Binary"
    if role in ("professional", "system") and member and not named:
        return 403, "PATIENT_CONTEXT_REQUIRED", None
    refused = expect_patient_level(caller, named)
    if refused:
        return refused[0], refused[1], None
    if role == "patient":
        scope = [caller["patient"]]
    elif role == "legal-representative":
        scope = [p for p in caller["represents"] if patient_access(caller, p)[0]]
    else:
        scope = None
    out = []
    for r in STORED:
        if r["resourceType"] != rtype:
            continue
        o = owners(r)
        if named and not set(o) & set(named):
            continue
        if scope is not None and member and not set(o) & set(scope):
            continue
        if visible(caller, r)[0]:
            out.append("%s/%s" % (rtype, r["id"]))
    return 200, None, out


SEARCH_TYPES = ["Observation", "DocumentReference", "Condition", "MedicationRequest", "Immunization", "Consent"]
SEARCH_PATIENTS = ["pat-a", "pat-b", "pat-c", "pat-d", "pat-e", "pat-g", "pat-h"]

# 3. Type searches naming a patient, for every caller.
for cname, caller in CALLERS.items():
    for rtype in SEARCH_TYPES:
        for pid in SEARCH_PATIENTS:
            if (rtype, pid) not in {("Observation", p) for p in SEARCH_PATIENTS} | {
                    ("DocumentReference", "pat-a"), ("DocumentReference", "pat-c"), ("Condition", "pat-a"),
                    ("MedicationRequest", "pat-a"), ("Immunization", "pat-a"), ("Consent", "pat-a")}:
                continue
            status, rule, ids = search_expect(cname, caller, rtype, [pid])
            case("search %s?patient=%s as %s" % (rtype, pid, cname), cname, "GET", "/%s?patient=%s" % (rtype, pid),
                 status, rule=rule, ids=ids)

# 4. Compartment searches and searches without a patient.
for cname, caller in CALLERS.items():
    for pid in ["pat-a", "pat-c"]:
        status, rule, ids = search_expect(cname, caller, "DocumentReference", [pid])
        case("compartment /Patient/%s/DocumentReference as %s" % (pid, cname), cname, "GET",
             "/Patient/%s/DocumentReference" % pid, status, rule=rule, ids=ids)
    status, rule, ids = search_expect(cname, caller, "Observation", [])
    case("search Observation without patient as " + cname, cname, "GET", "/Observation", status, rule=rule, ids=ids)
    status, rule, ids = search_expect(cname, caller, "Practitioner", [])
    case("search Practitioner as " + cname, cname, "GET", "/Practitioner", status, rule=rule, ids=ids)

# 4b. Patient/[id]/$everything: the Patient and its compartment, as the caller may see them.
for cname, caller in CALLERS.items():
    for pid in ["pat-a", "pat-c", "pat-b"]:
        refused = None
        if purpose(caller) not in PURPOSES[caller["role"]]["allowed"]:
            refused = (403, "NON_CARE_PURPOSE")
        elif caller["role"] == "administrator":
            refused = (403, "ADMIN_NO_CLINICAL")
        elif launch_only(caller, "Patient", "rs") and pid != caller.get("patient"):
            refused = (403, "SCOPE")
        refused = refused or expect_patient_level(caller, [pid])
        if refused:
            case("$everything %s as %s" % (pid, cname), cname, "GET", "/Patient/%s/$everything" % pid, refused[0],
                 rule=refused[1])
            continue
        ids = ["%s/%s" % (r["resourceType"], r["id"]) for r in STORED
               if pid in owners(r) and visible(caller, r)[0]]
        case("$everything %s as %s" % (pid, cname), cname, "GET", "/Patient/%s/$everything" % pid, 200, ids=ids)

# 4c. Batch of reads: each entry judged alone; hidden entries answer as absent ones.
BATCH_READS = [("Observation", "obs-a1"), ("Observation", "obs-b1"), ("Observation", "obs-c1"),
               ("DocumentReference", "doc-a-masked"), ("DocumentReference", "doc-a-psy"), ("Binary", "bin-orphan"),
               ("Observation", "never-written")]
batch_body = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": "%s/%s" % (t, i)}} for t, i in BATCH_READS]}
for cname, caller in CALLERS.items():
    if purpose(caller) not in PURPOSES[caller["role"]]["allowed"]:
        case("batch of reads as " + cname, cname, "POST", "/", 403, rule="NON_CARE_PURPOSE", body=batch_body)
        continue
    if caller["role"] == "administrator":
        case("batch of reads as " + cname, cname, "POST", "/", 403, rule="ADMIN_NO_CLINICAL", body=batch_body)
        continue
    ids = ["%s/%s" % (t, i) for t, i in BATCH_READS if (t, i) in BY_ID and visible(caller, BY_ID[(t, i)])[0]]
    case("batch of reads as " + cname, cname, "POST", "/", 200, ids=ids, body=batch_body)

# 5. Chains and _has into hideable types.
for cname in ["pat-a", "dr-granted", "dr-gp", "hosp-system", "rep-c"]:
    caller = CALLERS[cname]
    pid = "pat-c" if cname == "rep-c" else "pat-a"
    case("_has on DocumentReference as " + cname, cname, "GET",
         "/Patient?_id=%s&_has:DocumentReference:subject:type=11502-2" % pid, 403, rule="CHAIN_ON_HIDEABLE")
    case("chain into DocumentReference as " + cname, cname, "GET",
         "/Observation?patient=%s&derived-from:DocumentReference.status=current" % pid, 403, rule="CHAIN_ON_HIDEABLE")
    case("_has on DocumentReference from a search as " + cname, cname, "GET",
         "/Observation?patient=%s&_has:DocumentReference:subject:status=current" % pid, 403, rule="CHAIN_ON_HIDEABLE")

# 6. Purposes, AuditEvent, administrator, capabilities.
for cname in CALLERS:
    caller = CALLERS[cname]
    refused = request_level(caller, "AuditEvent", "create", [])
    case("create AuditEvent as " + cname, cname, "POST", "/AuditEvent", refused[0], rule=refused[1],
         body={"resourceType": "AuditEvent", "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
               "recorded": "2026-01-01T00:00:00Z", "agent": [{"requestor": True}],
               "source": {"observer": {"display": "x"}}})
    if caller["role"] not in ("patient", "legal-representative"):
        refused = request_level(caller, "AuditEvent", "search", [])
        case("search AuditEvent as " + cname, cname, "GET", "/AuditEvent", refused[0], rule=refused[1])
    case("capabilities as " + cname, cname, "GET", "/metadata",
         403 if purpose(caller) not in PURPOSES[caller["role"]]["allowed"] else 200,
         rule="NON_CARE_PURPOSE" if purpose(caller) not in PURPOSES[caller["role"]]["allowed"] else None)

# Patients find a record by INS identifier only if they may reach it.
for cname in ["dr-granted", "dr-stranger", "dr-emergency", "pharm", "hosp-system"]:
    caller = CALLERS[cname]
    for pid in ["pat-a", "pat-b"]:
        ins = BY_ID[("Patient", pid)]["identifier"][0]["value"]
        ok = visible(caller, BY_ID[("Patient", pid)])[0]
        case("find %s by INS as %s" % (pid, cname), cname, "GET", "/Patient?identifier=%s%%7C%s" % (INS, ins), 200,
             ids=["Patient/" + pid] if ok else [])

# ---------------------------------------------------------------- writes (run last, in order)


def new_obs(pid, oid=None):
    r = {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
         "subject": {"reference": "Patient/" + pid},
         "valueQuantity": {"value": 60, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    if oid:
        r["id"] = oid
    return r


def write_expect(cname, rtype, body, interaction, before=None):
    caller = CALLERS[cname]
    named = owners(body) if rtype != "Patient" else ([body["id"]] if "id" in body and interaction != "create" else [])
    refused = request_level(caller, rtype, interaction, named) or expect_patient_level(caller, named, rtype, True)
    return refused


n = 0
for cname in CALLERS:
    caller = CALLERS[cname]
    for pid in ["pat-a", "pat-c", "pat-b"]:
        n += 1
        body = new_obs(pid)
        refused = write_expect(cname, "Observation", body, "create")
        if not refused:
            ok, why = visible(caller, body)
            if not ok:
                refused = (403, told(caller, why))
            elif caller["role"] in ("patient", "legal-representative") and "Observation" not in ROLES["patient_writable_types"]:
                refused = (403, "PATIENT_WRITE")
        case("create Observation for %s as %s" % (pid, cname), cname, "POST", "/Observation",
             refused[0] if refused else 201, rule=refused[1] if refused else None, body=body)

# A transaction is all or nothing: one entry the caller may not write refuses it.
for cname, pids in [("dr-granted", ["pat-a", "pat-c"]), ("dr-granted", ["pat-a", "pat-b"]), ("nurse", ["pat-a"]),
                    ("pharm", ["pat-a"]), ("rep-c", ["pat-c"]), ("hosp-system", ["pat-a"]), ("dr-stranger", ["pat-a"])]:
    caller = CALLERS[cname]
    body = {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": "urn:uuid:00000000-0000-4000-8000-%012d" % k, "resource": new_obs(p),
                       "request": {"method": "POST", "url": "Observation"}} for k, p in enumerate(pids)]}
    refused = None
    for p in pids:
        ok, why = visible(caller, new_obs(p))
        if not ok:
            refused = (403, told(caller, why))
            break
    case("transaction creating Observations for %s as %s" % ("+".join(pids), cname), cname, "POST", "/",
         refused[0] if refused else 200, rule=refused[1] if refused else None, body=body)

# Update-as-create: systems only; hidden ids answer like absent ones.
for cname in ["dr-granted", "pat-a", "hosp-system", "dr-stranger"]:
    body = new_obs("pat-a", "new-put-" + cname)
    refused = write_expect(cname, "Observation", body, "update")
    if not refused and CALLERS[cname]["role"] != "system":
        refused = (403, "UPDATE_AS_CREATE")
    case("update-as-create Observation as " + cname, cname, "PUT", "/Observation/new-put-" + cname,
         refused[0] if refused else 201, rule=refused[1] if refused else None, body=body)
# PUT over obs-b1 (hidden from dr-granted, whose grant on pat-b starts in 2027): the same 403 as an absent id.
body = new_obs("pat-a", "obs-b1")
case("update over a hidden resource as dr-granted", "dr-granted", "PUT", "/Observation/obs-b1", 403,
     rule="UPDATE_AS_CREATE", body=body)

# Consents are the patient's.
consent_body = {"resourceType": "Consent", "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
                "patient": {"reference": "Patient/pat-a"},
                "provision": {"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                                                           "reference": {"reference": "Practitioner/dr-stranger"}}]}}
case("before the grant, dr-stranger has no access", "dr-stranger", "GET", "/Observation?patient=pat-a", 403, rule="NO_GRANT")
case("patient grants a professional", "pat-a", "POST", "/Consent", 201, body=consent_body)
case("the new grant opens the record to dr-stranger", "dr-stranger", "GET", "/Observation/obs-a1", 200)
case("professional writes a Consent", "dr-granted", "POST", "/Consent", 403, rule="CONSENT_PATIENT_ONLY", body=consent_body)
case("other patient writes pat-a's Consent", "pat-b", "POST", "/Consent", 403, rule="OTHER_PATIENT", body=consent_body)

# Masking: the patient may change MASQUE_PS only.
masked = json.loads(json.dumps(BY_ID[("DocumentReference", "doc-a-consult")]))
masked["securityLabel"] = [{"coding": [{"system": CONF, "code": "MASQUE_PS"}]}]
case("patient masks a document", "pat-a", "PUT", "/DocumentReference/doc-a-consult", 200, body=masked)
case("a masked document is hidden from a granted non-author", "kine", "GET", "/DocumentReference/doc-a-consult", 404)
case("the GP sees the masked document", "dr-gp", "GET", "/DocumentReference/doc-a-consult", 200)
case("the author sees the masked document", "dr-granted", "GET", "/DocumentReference/doc-a-consult", 200)
case("the masked document's Binary follows it", "kine", "GET", "/Binary/bin-doc-a-consult", 404)
case("pharmacist cannot see a consult note anyway", "pharm", "GET", "/DocumentReference/doc-a-consult", 404)
edited = json.loads(json.dumps(masked))
edited["status"] = "entered-in-error"
case("patient edits a document's content", "pat-a", "PUT", "/DocumentReference/doc-a-consult", 403,
     rule="LABEL_EDIT_ONLY", body=edited)
unmasked = json.loads(json.dumps(BY_ID[("DocumentReference", "doc-a-consult")]))
case("patient unmasks a document", "pat-a", "PUT", "/DocumentReference/doc-a-consult", 200, body=unmasked)
case("unmasked again for a granted doctor", "dr-granted", "GET", "/DocumentReference/doc-a-consult", 200)

# Settings belong to the patient.
pat_a = json.loads(json.dumps(BY_ID[("Patient", "pat-a")]))
pat_a["extension"] = [{"url": EXT + "dmp-break-glass-opposition", "valueBoolean": True}]
case("GP changes the patient's settings", "dr-gp", "PUT", "/Patient/pat-a", 403, rule="SETTINGS_PATIENT_ONLY", body=pat_a)
case("patient opposes break-glass", "pat-a", "PUT", "/Patient/pat-a", 200, body=pat_a)
case("break-glass refused once opposed (told as NO_GRANT)", "dr-emergency", "GET", "/Observation?patient=pat-a", 403, rule="NO_GRANT")
case("break-glass read hidden once opposed", "dr-emergency", "GET", "/Observation/obs-a1", 404)
status, rule, ids = search_expect("dr-granted", CALLERS["dr-granted"], "DocumentReference", ["pat-a"])
case("the granted doctor is unaffected", "dr-granted", "GET", "/DocumentReference?patient=pat-a", status, rule=rule, ids=ids)
# The patient closes the record, then reopens it.
pat_e = json.loads(json.dumps(BY_ID[("Patient", "pat-e")]))
case("closed account: the patient reads own Patient", "pat-e", "GET", "/Patient/pat-e", 200)
case("closed account: the patient's data is out of reach", "pat-e", "GET", "/Observation/obs-e1", 404)
pat_e["extension"] = [{"url": EXT + "dmp-account-state", "valueCode": "active"}]
case("closed account: the patient reactivates it", "pat-e", "PUT", "/Patient/pat-e", 200, body=pat_e)
case("reactivated: the patient reads own data", "pat-e", "GET", "/Observation/obs-e1", 200)
case("reactivated: the GP reads it too", "dr-gp", "GET", "/Observation/obs-e1", 200)
# Systems register patients; professionals do not.
new_patient = {"resourceType": "Patient", "id": "pat-new", "birthDate": "1999-09-09", "name": [{"family": "New"}]}
case("professional registers a patient", "dr-gp", "PUT", "/Patient/pat-new", 403, rule="NO_GRANT", body=new_patient)
case("system registers a patient", "hosp-system", "PUT", "/Patient/pat-new", 201, body=new_patient)
case("patient deletes own Observation", "pat-a", "DELETE", "/Observation/obs-a1", 403, rule="PATIENT_WRITE")
case("administrator deletes", "admin", "DELETE", "/Observation/obs-a1", 403, rule="ADMIN_NO_CLINICAL")
case("granted doctor deletes an Observation", "dr-granted", "DELETE", "/Observation/obs-a1", 204)
case("a deleted resource hidden from a doctor without grant is 404, not 410", "dr-expired", "GET", "/Observation/obs-a1", 404)
case("a deleted resource seen by the GP is 410", "dr-gp", "GET", "/Observation/obs-a1", 410)

os.makedirs(HERE, exist_ok=True)
with open(os.path.join(HERE, "spaces.json"), "w") as f:
    json.dump({"resources": resources}, f, indent=1, ensure_ascii=False)
    f.write("\n")
with open(os.path.join(HERE, "cases.json"), "w") as f:
    json.dump({"now": NOW + "T00:00:00Z", "callers": CALLERS, "cases": cases}, f, indent=1, ensure_ascii=False)
    f.write("\n")
print("%d resources, %d callers, %d cases" % (len(resources), len(CALLERS), len(cases)))
