#!/usr/bin/env python3
"""Differential search test set: a synthetic data set and searches with the
ids each must return, computed here from the generated values by a separate,
deliberately plain reading of hl7.org/fhir/R4/search.html (no FHIRPath, no
SQL). tests/server/interactions/search_differential_test.cpp loads the
resources into the real engine and compares.

Writes resources.ndjson and cases.tsv (type, query string, expected ids
sorted and comma-separated) next to this script. Deterministic (fixed seed).
"""
import datetime as dt
import json
import os
import random
import unicodedata
from urllib.parse import quote

rnd = random.Random(20261123)
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test-data", "search")

FAMILIES = ["Dupré", "Lefèvre", "Martin", "Martineau", "Bernard", "Petit", "Durand", "Leroy", "Moreau",
            "Müller", "Garçon", "Noël", "Château", "Roux", "Fournier"]
GIVENS = ["Élodie", "Jean", "Chloé", "Hélène", "Louis", "Zoé", "Agnès", "Jérôme", "Inès", "Paul"]
CITIES = ["Paris", "Lyon", "Saint-Étienne", "Besançon", "Nîmes", "Orléans"]
GENDERS = ["male", "female", "other", "unknown"]
CODES = [("http://loinc.org", "8867-4", "Heart rate", "/min"),
         ("http://loinc.org", "29463-7", "Body weight", "kg"),
         ("http://loinc.org", "8302-2", "Body height", "cm"),
         ("http://loinc.org", "2339-0", "Glucose", "mg/dL"),
         ("http://snomed.info/sct", "271649006", "Systolic blood pressure", "mm[Hg]")]
STATUSES = ["final", "amended", "preliminary"]


def norm(s):
    """Lower case without accents (NFD, combining marks dropped)."""
    return "".join(c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c)).lower()


US = 1_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def to_us(d):
    return int((d - EPOCH).total_seconds()) * US + d.microsecond


def date_range(text):
    """First and last microsecond of a partial date/dateTime (UTC when no zone)."""
    if len(text) == 4:
        y = int(text)
        return to_us(dt.datetime(y, 1, 1, tzinfo=dt.timezone.utc)), to_us(dt.datetime(y + 1, 1, 1, tzinfo=dt.timezone.utc)) - 1
    if len(text) == 7:
        y, m = int(text[:4]), int(text[5:7])
        nxt = dt.datetime(y + (m == 12), 1 if m == 12 else m + 1, 1, tzinfo=dt.timezone.utc)
        return to_us(dt.datetime(y, m, 1, tzinfo=dt.timezone.utc)), to_us(nxt) - 1
    if len(text) == 10:
        d = dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
        return to_us(d), to_us(d + dt.timedelta(days=1)) - 1
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    step = dt.timedelta(seconds=1) if text.count(":") >= 2 else dt.timedelta(minutes=1)
    if "+" in text[10:] or text.endswith("Z") or "-" in text[10:]:
        clock = text[11:].rstrip("Z").split("+")[0].split("-")[0]
        step = dt.timedelta(seconds=1) if clock.count(":") >= 2 else dt.timedelta(minutes=1)
    return to_us(d), to_us(d + step) - 1


def date_match(prefix, plo, phi, lo, hi):
    eq = plo <= lo and hi <= phi
    return {"eq": eq, "ne": not eq, "gt": hi > phi, "lt": lo < plo, "ge": hi > phi or eq, "le": lo < plo or eq,
            "sa": lo > phi, "eb": hi < plo}[prefix]


def number_match(prefix, text, v):
    p = float(text)
    decimals = len(text.split(".")[1]) if "." in text else 0
    half = 0.5 * 10 ** -decimals
    return {"eq": p - half <= v < p + half, "ne": not (p - half <= v < p + half), "gt": v > p, "lt": v < p,
            "ge": v >= p, "le": v <= p, "sa": v > p, "eb": v < p}[prefix]


def random_date():
    y = rnd.randint(1940, 2010)
    kind = rnd.random()
    if kind < 0.15:
        return str(y)
    if kind < 0.3:
        return "%04d-%02d" % (y, rnd.randint(1, 12))
    return "%04d-%02d-%02d" % (y, rnd.randint(1, 12), rnd.randint(1, 28))


practitioners, patients, observations = [], [], []
for i in range(8):
    practitioners.append({"resourceType": "Practitioner", "id": "prac-%d" % i,
                          "name": [{"family": FAMILIES[(i * 4) % len(FAMILIES)], "given": [GIVENS[i % len(GIVENS)]]}],
                          "identifier": [{"system": "urn:rpps", "value": "R%03d" % i}]})
for i in range(120):
    p = {"resourceType": "Patient", "id": "pat-%d" % i}
    if rnd.random() < 0.9:
        p["identifier"] = [{"system": "urn:ins" if i % 3 else "urn:mrn", "value": "ID%04d" % (i * 7)}]
    if rnd.random() < 0.8:
        p["active"] = rnd.random() < 0.7
    names = []
    for _ in range(1 if rnd.random() < 0.85 else 2):
        names.append({"family": rnd.choice(FAMILIES), "given": [rnd.choice(GIVENS)] + ([rnd.choice(GIVENS)] if rnd.random() < 0.3 else [])})
    p["name"] = names
    if rnd.random() < 0.95:
        p["gender"] = rnd.choice(GENDERS)
    if rnd.random() < 0.92:
        p["birthDate"] = random_date()
    if rnd.random() < 0.7:
        p["address"] = [{"city": rnd.choice(CITIES)}]
    if rnd.random() < 0.6:
        p["generalPractitioner"] = [{"reference": "Practitioner/prac-%d" % rnd.randrange(len(practitioners))}]
    patients.append(p)
for i in range(300):
    system, code, display, unit = rnd.choice(CODES)
    o = {"resourceType": "Observation", "id": "obs-%d" % i, "status": rnd.choice(STATUSES),
         "code": {"coding": [{"system": system, "code": code, "display": display}]},
         "subject": {"reference": "Patient/pat-%d" % rnd.randrange(len(patients))}}
    r = rnd.random()
    if r < 0.5:
        o["effectiveDateTime"] = "2024-%02d-%02dT%02d:%02d:00Z" % (rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23), rnd.choice([0, 15, 30, 45]))
    elif r < 0.7:
        o["effectiveDateTime"] = "2024-%02d-%02d" % (rnd.randint(1, 12), rnd.randint(1, 28))
    elif r < 0.9:
        m = rnd.randint(1, 11)
        o["effectivePeriod"] = {"start": "2024-%02d-01" % m, "end": "2024-%02d-15" % (m + 1)}
    if rnd.random() < 0.9:
        value = round(rnd.uniform(40, 200), rnd.choice([0, 1, 2]))
        o["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    observations.append(o)

by_id = {r["resourceType"] + "/" + r["id"]: r for r in practitioners + patients + observations}
cases = []


def add(rtype, params, pred):
    pool = {"Patient": patients, "Observation": observations, "Practitioner": practitioners}[rtype]
    ids = sorted(r["id"] for r in pool if pred(r))
    query = "&".join(quote(k, safe=":._-") + "=" + quote(v, safe="") for k, v in params)
    cases.append((rtype, query, ",".join(ids)))


def families(p):
    return [n["family"] for n in p.get("name", []) if "family" in n]


def name_parts(p):
    return [x for n in p.get("name", []) for x in ([n["family"]] if "family" in n else []) + n.get("given", [])]


def birth_range(p):
    return date_range(p["birthDate"]) if "birthDate" in p else None


def obs_range(o):
    if "effectiveDateTime" in o:
        return date_range(o["effectiveDateTime"])
    if "effectivePeriod" in o:
        return date_range(o["effectivePeriod"]["start"])[0], date_range(o["effectivePeriod"]["end"])[1]
    return None


# Patient: token gender (plain, :not, OR)
for g in GENDERS:
    add("Patient", [("gender", g)], lambda p, g=g: p.get("gender") == g)
    add("Patient", [("gender:not", g)], lambda p, g=g: p.get("gender") != g)
for a, b in [("male", "female"), ("other", "unknown"), ("female", "other")]:
    add("Patient", [("gender", a + "," + b)], lambda p, a=a, b=b: p.get("gender") in (a, b))
# boolean token and :missing
add("Patient", [("active", "true")], lambda p: p.get("active") is True)
add("Patient", [("active", "false")], lambda p: p.get("active") is False)
add("Patient", [("active:missing", "true")], lambda p: "active" not in p)
add("Patient", [("active:missing", "false")], lambda p: "active" in p)
add("Patient", [("birthdate:missing", "true")], lambda p: "birthDate" not in p)
add("Patient", [("gender:missing", "true")], lambda p: "gender" not in p)
# string: default (starts with, accent- and case-insensitive), :exact, :contains
for fam in FAMILIES:
    pre = fam[:4]
    add("Patient", [("family", pre)], lambda p, s=norm(pre): any(norm(f).startswith(s) for f in families(p)))
    add("Patient", [("family:exact", fam)], lambda p, f0=fam: f0 in families(p))
for q in ["dupre", "DUPRÉ", "martin", "ler", "chat", "noel", "mul"]:
    add("Patient", [("family", q)], lambda p, s=norm(q): any(norm(f).startswith(s) for f in families(p)))
for q in ["tin", "ou", "è", "eau", "rç"]:
    add("Patient", [("family:contains", q)], lambda p, s=norm(q): any(s in norm(f) for f in families(p)))
for q in ["elo", "jé", "ZOE", "agn", "p", "ines"]:
    add("Patient", [("name", q)], lambda p, s=norm(q): any(norm(x).startswith(s) for x in name_parts(p)))
    add("Patient", [("given", q)], lambda p, s=norm(q): any(norm(x).startswith(s) for n in p.get("name", []) for x in n.get("given", [])))
for city in ["paris", "saint-e", "Besançon", "nimes", "orl"]:
    add("Patient", [("address-city", city)], lambda p, s=norm(city): any(norm(a.get("city", "")).startswith(s) for a in p.get("address", [])))
# token identifier
for i in [0, 3, 7, 10, 33, 60, 99, 119]:
    v = "ID%04d" % (i * 7)
    add("Patient", [("identifier", v)], lambda p, v=v: any(x["value"] == v for x in p.get("identifier", [])))
    add("Patient", [("identifier", "urn:ins|" + v)], lambda p, v=v: any(x["value"] == v and x["system"] == "urn:ins" for x in p.get("identifier", [])))
add("Patient", [("identifier", "urn:mrn|")], lambda p: any(x["system"] == "urn:mrn" for x in p.get("identifier", [])))
add("Patient", [("identifier", "|ID0000")], lambda p: False)  # every identifier here has a system
# date: every prefix against several precisions
for value in ["1970", "1985-06", "1990-03-15", "1955", "2000-01-01", "1942-07"]:
    plo, phi = date_range(value)
    for prefix in ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]:
        add("Patient", [("birthdate", prefix + value)],
            lambda p, pr=prefix, a=plo, b=phi: birth_range(p) is not None and date_match(pr, a, b, *birth_range(p))
            if pr != "ne" else birth_range(p) is None or date_match("ne", a, b, *birth_range(p)))
add("Patient", [("birthdate", "ge1960"), ("birthdate", "lt1970")],
    lambda p: birth_range(p) is not None and date_match("ge", *date_range("1960"), *birth_range(p)) and date_match("lt", *date_range("1970"), *birth_range(p)))
# reference: Type/id, bare id, :Type, chains
for k in range(len(practitioners)):
    add("Patient", [("general-practitioner", "Practitioner/prac-%d" % k)],
        lambda p, k=k: any(r["reference"] == "Practitioner/prac-%d" % k for r in p.get("generalPractitioner", [])))
    add("Patient", [("general-practitioner:Practitioner", "prac-%d" % k)],
        lambda p, k=k: any(r["reference"] == "Practitioner/prac-%d" % k for r in p.get("generalPractitioner", [])))


def gp_of(p):
    return [by_id[r["reference"]] for r in p.get("generalPractitioner", [])]


for q in ["dup", "mart", "bern", "lef"]:
    add("Patient", [("general-practitioner:Practitioner.family", q)],
        lambda p, s=norm(q): any(norm(f).startswith(s) for pr in gp_of(p) for f in families(pr)))
for i in [0, 1, 5, 17, 42, 77, 101, 119]:
    add("Observation", [("subject", "Patient/pat-%d" % i)], lambda o, i=i: o["subject"]["reference"] == "Patient/pat-%d" % i)
    add("Observation", [("patient", "pat-%d" % i)], lambda o, i=i: o["subject"]["reference"] == "Patient/pat-%d" % i)


def subj(o):
    return by_id[o["subject"]["reference"]]


for g in GENDERS:
    add("Observation", [("subject:Patient.gender", g)], lambda o, g=g: subj(o).get("gender") == g)
for q in ["dupr", "moreau", "roux"]:
    add("Observation", [("patient.family", q)], lambda o, s=norm(q): any(norm(f).startswith(s) for f in families(subj(o))))
add("Observation", [("subject:Patient.general-practitioner:Practitioner.identifier", "urn:rpps|R003")],
    lambda o: any(pr["identifier"][0]["value"] == "R003" for pr in gp_of(subj(o))))
# reverse chaining
for system, code, _, _ in CODES:
    add("Patient", [("_has:Observation:subject:code", code)],
        lambda p, c=code: any(o["subject"]["reference"] == "Patient/" + p["id"] and o["code"]["coding"][0]["code"] == c for o in observations))
for st in STATUSES:
    add("Patient", [("_has:Observation:patient:status", st)],
        lambda p, s=st: any(o["subject"]["reference"] == "Patient/" + p["id"] and o["status"] == s for o in observations))
# Observation tokens
for system, code, display, _ in CODES:
    add("Observation", [("code", code)], lambda o, c=code: o["code"]["coding"][0]["code"] == c)
    add("Observation", [("code", system + "|" + code)], lambda o, c=code, s=system: o["code"]["coding"][0]["code"] == c and o["code"]["coding"][0]["system"] == s)
    add("Observation", [("code", "http://wrong.example|" + code)], lambda o: False)
    add("Observation", [("code:text", display.split()[0].lower())],
        lambda o, d=norm(display.split()[0]): norm(o["code"]["coding"][0]["display"]).startswith(d))
for st in STATUSES:
    add("Observation", [("status", st)], lambda o, s=st: o["status"] == s)
    add("Observation", [("status:not", st)], lambda o, s=st: o["status"] != s)
# Observation dates (dateTime, date, Period) with every prefix
for value in ["2024-03", "2024-06-10", "2024-01-15T10:30:00Z", "2024", "2024-11-20", "2024-08"]:
    plo, phi = date_range(value)
    for prefix in ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]:
        add("Observation", [("date", prefix + value)],
            lambda o, pr=prefix, a=plo, b=phi: (obs_range(o) is None) if pr == "ne" and obs_range(o) is None
            else obs_range(o) is not None and date_match(pr, a, b, *obs_range(o)))
# quantity: prefixes, precision, units


def qv(o):
    return o["valueQuantity"]["value"] if "valueQuantity" in o else None


for value in ["100", "72.5", "150", "60", "199.99", "45.0"]:
    for prefix in ["eq", "gt", "lt", "ge", "le", "ne"]:
        add("Observation", [("value-quantity", prefix + value)],
            lambda o, pr=prefix, v=value: (qv(o) is None) if pr == "ne" and qv(o) is None
            else qv(o) is not None and number_match(pr, v, qv(o)))
for _, _, _, unit in CODES[:3]:
    add("Observation", [("value-quantity", "gt100|http://unitsofmeasure.org|" + unit)],
        lambda o, u=unit: qv(o) is not None and qv(o) > 100 and o["valueQuantity"]["code"] == u)
    add("Observation", [("value-quantity", "lt80||" + unit)],
        lambda o, u=unit: qv(o) is not None and qv(o) < 80 and o["valueQuantity"]["code"] == u)
# _id and AND combinations
add("Patient", [("_id", "pat-3")], lambda p: p["id"] == "pat-3")
add("Patient", [("_id", "pat-3,pat-9,nope")], lambda p: p["id"] in ("pat-3", "pat-9"))
add("Observation", [("_id", "obs-1,obs-2"), ("status", "final")], lambda o: o["id"] in ("obs-1", "obs-2") and o["status"] == "final")
add("Patient", [("gender", "female"), ("active", "true")], lambda p: p.get("gender") == "female" and p.get("active") is True)
add("Patient", [("gender", "male"), ("family", "m")], lambda p: p.get("gender") == "male" and any(norm(f).startswith("m") for f in families(p)))
add("Observation", [("code", "8867-4"), ("value-quantity", "gt100"), ("status", "final,amended")],
    lambda o: o["code"]["coding"][0]["code"] == "8867-4" and qv(o) is not None and qv(o) > 100 and o["status"] in ("final", "amended"))
add("Observation", [("date", "ge2024-06"), ("date", "lt2024-09")],
    lambda o: obs_range(o) is not None and date_match("ge", *date_range("2024-06"), *obs_range(o)) and date_match("lt", *date_range("2024-09"), *obs_range(o)))
add("Practitioner", [("identifier", "urn:rpps|R005")], lambda r: r["identifier"][0]["value"] == "R005")
add("Practitioner", [("name", "jean")], lambda r: any(norm(x).startswith("jean") for x in name_parts(r)))

with open(os.path.join(HERE, "resources.ndjson"), "w") as f:
    for r in practitioners + patients + observations:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
with open(os.path.join(HERE, "cases.tsv"), "w") as f:
    f.write("# type\tquery\texpected ids (generated by tools/generate-search-testdata.py; do not edit)\n")
    for rtype, query, ids in cases:
        f.write("%s\t%s\t%s\n" % (rtype, query, ids))
print(len(cases), "cases,", len(by_id), "resources")
