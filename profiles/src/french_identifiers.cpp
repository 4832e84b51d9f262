// French national identifiers (see french_identifiers.h for the rules).
#include "espace/profiles/french_identifiers.h"

#include <cstdint>

#include "espace/fhir/node.h"

#include "espace/profiles/validator.h"

namespace espace::profiles::fr {

using fhir::Severity;

namespace {

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

KeyCheck malformed(std::string reason) {
  KeyCheck k;
  k.reason = std::move(reason);
  return k;
}

// Luhn: from the right, every second digit doubled (minus 9 above 9).
int luhn_sum(std::string_view digits, bool double_first_from_right) {
  int sum = 0;
  bool dbl = double_first_from_right;
  for (size_t i = digits.size(); i-- > 0;) {
    int d = digits[i] - '0';
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum;
}

KeyCheck luhn_check(std::string_view value) {
  KeyCheck k;
  k.well_formed = true;
  k.key_checked = true;
  k.expected_key = luhn_digit(value.substr(0, value.size() - 1));
  k.key_ok = !k.expected_key.empty() && value.back() == k.expected_key[0];
  return k;
}

}  // namespace

// ANS OIDs (INS: "Identifiant national de santé", referential of the
// Assurance Maladie; RPPS/ADELI under IDNPS; FINESS/SIRET under IDNST).
const std::vector<IdentifierSystem>& identifier_systems() {
  static const std::vector<IdentifierSystem> table = {
      {"urn:oid:1.2.250.1.213.1.4.8", "INS-NIR", Scheme::Nir, true},
      {"urn:oid:1.2.250.1.213.1.4.9", "INS-NIA", Scheme::Nir, true},
      {"urn:oid:1.2.250.1.213.1.4.10", "INS-NIR (test)", Scheme::Nir, false},
      {"urn:oid:1.2.250.1.213.1.4.11", "INS-NIR (demonstration)", Scheme::Nir, false},
      {"urn:oid:1.2.250.1.71.4.2.1", "IDNPS (RPPS / ADELI)", Scheme::Idnps, true},
      {"urn:oid:1.2.250.1.71.4.2.2", "IDNST (FINESS / SIRET)", Scheme::Idnst, true},
      {"http://finess.sante.gouv.fr", "FINESS", Scheme::Finess, true},
      {"https://sirene.fr", "SIREN / SIRET", Scheme::Sirene, true},
  };
  return table;
}

const IdentifierSystem* find_identifier_system(std::string_view system) {
  for (const IdentifierSystem& s : identifier_systems())
    if (s.system == system) return &s;
  return nullptr;
}

std::string luhn_digit(std::string_view digits) {
  if (!all_digits(digits)) return {};
  int sum = luhn_sum(digits, true);
  return std::string(1, static_cast<char>('0' + (10 - sum % 10) % 10));
}

std::string nir_key(std::string_view first13) {
  if (first13.size() != 13) return {};
  std::string digits(first13);
  // Corsica: 2A and 2B stand for 19 and 18 in the computation.
  // Characters 6-7 are the department of birth.
  if (digits[6] == 'A' || digits[6] == 'B') {
    if (digits[5] != '2') return {};
    digits[5] = '1';
    digits[6] = digits[6] == 'A' ? '9' : '8';
  }
  if (!all_digits(digits)) return {};
  uint64_t n = std::stoull(digits);
  unsigned key = 97 - static_cast<unsigned>(n % 97);
  char out[3] = {static_cast<char>('0' + key / 10), static_cast<char>('0' + key % 10), 0};
  return out;
}

KeyCheck check_nir(std::string_view value) {
  if (value.size() != 15) return malformed("an INS must have 15 characters (13 + a 2-digit key), found " +
                                           std::to_string(value.size()));
  char sex = value[0];
  if (sex != '1' && sex != '2' && sex != '3' && sex != '4' && sex != '7' && sex != '8')
    return malformed("the first character (sex) must be 1, 2, 3, 4, 7 or 8");
  if (!all_digits(value.substr(13))) return malformed("the key (last 2 characters) must be digits");
  KeyCheck k;
  k.expected_key = nir_key(value.substr(0, 13));
  if (k.expected_key.empty())
    return malformed("characters 1-13 must be digits (the department may be 2A or 2B)");
  k.well_formed = true;
  k.key_checked = true;
  k.key_ok = value.substr(13) == k.expected_key;
  return k;
}

KeyCheck check_rpps(std::string_view value) {
  if (value.size() != 11 || !all_digits(value)) return malformed("an RPPS number has 11 digits");
  return luhn_check(value);
}

KeyCheck check_adeli(std::string_view value) {
  if (value.size() != 9) return malformed("an ADELI number has 9 characters");
  std::string digits(value);
  if (digits[0] == '2' && (digits[1] == 'A' || digits[1] == 'B')) digits[1] = '0';
  if (!all_digits(digits)) return malformed("an ADELI number is made of digits (department 2A/2B allowed)");
  KeyCheck k;
  k.well_formed = true;
  k.reason = "ADELI numbers have no published control key";
  return k;
}

KeyCheck check_finess(std::string_view value) {
  if (value.size() != 9) return malformed("a FINESS number has 9 characters");
  if (value[0] == '2' && (value[1] == 'A' || value[1] == 'B')) {
    if (!all_digits(value.substr(2))) return malformed("a FINESS number is made of digits (department 2A/2B allowed)");
    KeyCheck k;
    k.well_formed = true;
    k.reason = "the key of a Corsican FINESS number (2A/2B) is not checked";
    return k;
  }
  if (!all_digits(value)) return malformed("a FINESS number is made of digits (department 2A/2B allowed)");
  return luhn_check(value);
}

KeyCheck check_siret(std::string_view value) {
  if (value.size() != 14 || !all_digits(value)) return malformed("a SIRET number has 14 digits");
  // La Poste (SIREN 356000000): the sum of the digits is a multiple of 5.
  if (value.substr(0, 9) == "356000000") {
    KeyCheck k;
    k.well_formed = true;
    k.key_checked = true;
    int sum = 0;
    for (char c : value) sum += c - '0';
    k.key_ok = sum % 5 == 0;
    k.expected_key = "a digit sum that is a multiple of 5";
    return k;
  }
  return luhn_check(value);
}

KeyCheck check_identifier(Scheme scheme, std::string_view value, std::string* what) {
  auto named = [&](const char* name) {
    if (what) *what = name;
  };
  switch (scheme) {
    case Scheme::Nir:
      named("INS");
      return check_nir(value);
    case Scheme::Rpps:
      named("RPPS");
      return check_rpps(value);
    case Scheme::Adeli:
      named("ADELI");
      return check_adeli(value);
    case Scheme::Finess:
      named("FINESS");
      return check_finess(value);
    case Scheme::Siret:
      named("SIRET");
      return check_siret(value);
    case Scheme::Sirene:
      if (value.size() == 9) {
        named("SIREN");
        if (!all_digits(value)) return malformed("a SIREN number has 9 digits");
        return luhn_check(value);
      }
      return check_identifier(Scheme::Siret, value, what);
    case Scheme::Idnps:
      // IDNPS: "8" + RPPS, "0" + ADELI, or the bare number.
      if (value.size() == 12 && value[0] == '8') return check_identifier(Scheme::Rpps, value.substr(1), what);
      if (value.size() == 10 && value[0] == '0') return check_identifier(Scheme::Adeli, value.substr(1), what);
      if (value.size() == 11) return check_identifier(Scheme::Rpps, value, what);
      if (value.size() == 9) return check_identifier(Scheme::Adeli, value, what);
      named("IDNPS");
      return malformed("a national practitioner identifier is an RPPS number (11 digits, or 8 + 11) or an ADELI "
                       "number (9 characters, or 0 + 9)");
    case Scheme::Idnst:
      // IDNST: "1" or "2" + FINESS, "3" + SIRET, or the bare number.
      if (value.size() == 10 && (value[0] == '1' || value[0] == '2')) return check_identifier(Scheme::Finess, value.substr(1), what);
      if (value.size() == 15 && value[0] == '3') return check_identifier(Scheme::Siret, value.substr(1), what);
      if (value.size() == 9) return check_identifier(Scheme::Finess, value, what);
      if (value.size() == 14) return check_identifier(Scheme::Siret, value, what);
      named("IDNST");
      return malformed("a national structure identifier is a FINESS number (9 characters, or 1 + 9) or a SIRET "
                       "number (14 digits, or 3 + 14)");
  }
  return malformed("unknown scheme");
}

namespace {

void identifier_check(const fhir::Node& identifier, std::vector<CheckFinding>* out, bool ins_only) {
  std::string_view system = identifier.child_value("system");
  const IdentifierSystem* sys = find_identifier_system(system);
  if (!sys || (ins_only && sys->scheme != Scheme::Nir)) return;
  const fhir::Node* value_node = identifier.child("value");
  if (!value_node || !value_node->has_value) return;  // cardinality is the profile's business
  const std::string& value = value_node->value;
  std::string what;
  KeyCheck k = check_identifier(sys->scheme, value, &what);
  CheckFinding f;
  f.location_suffix = ".value";
  if (!k.well_formed) {
    f.message_id = "identifier-format-invalid";
    f.message = std::string(sys->label) + " identifier is malformed: " + k.reason;
  } else if (k.key_checked && !k.key_ok) {
    f.message_id = "identifier-key-invalid";
    f.message = std::string(sys->label) + " identifier has a wrong control key: " + what + " key expected " +
                k.expected_key;
    if (!sys->production) {
      f.severity = fhir::Severity::Warning;
      f.message += " (test/demonstration OID: warning only)";
    }
  } else {
    return;
  }
  out->push_back(std::move(f));
}

// The INS traits the NIR encodes (sex, year and month of birth) must agree
// with the Patient's gender and birthDate (INS referential). Months 20-42 and
// 50-99 stand for an unknown month and are not compared.
void ins_traits_check(const fhir::Node& patient, std::vector<CheckFinding>* out) {
  std::string_view gender = patient.child_value("gender");
  std::string_view birth = patient.child_value("birthDate");
  patient.for_each_child("identifier", [&](const fhir::Node& identifier) {
    const IdentifierSystem* sys = find_identifier_system(identifier.child_value("system"));
    if (!sys || sys->scheme != Scheme::Nir) return;
    std::string_view nir = identifier.child_value("value");
    if (!check_nir(nir).well_formed) return;  // reported by the key check
    Severity severity = sys->production ? Severity::Error : Severity::Warning;
    char sex = nir[0];
    std::string_view nir_gender = (sex == '1' || sex == '3' || sex == '7') ? "male" : "female";
    if (!gender.empty() && gender != nir_gender) {
      CheckFinding f;
      f.severity = severity;
      f.message_id = "ins-traits-mismatch";
      f.message = std::string(sys->label) + " encodes the sex " + std::string(nir_gender) + " (first character " +
                  std::string(1, sex) + ") but gender is " + std::string(gender);
      f.location_suffix = ".gender";
      out->push_back(std::move(f));
    }
    if (birth.size() >= 4) {
      std::string_view year = nir.substr(1, 2), month = nir.substr(3, 2);
      bool year_ok = birth.substr(2, 2) == year;
      int m = (month[0] - '0') * 10 + (month[1] - '0');
      bool month_known = m >= 1 && m <= 12;
      bool month_ok = !month_known || birth.size() < 7 || birth.substr(5, 2) == month;
      if (!year_ok || !month_ok) {
        CheckFinding f;
        f.severity = severity;
        f.message_id = "ins-traits-mismatch";
        f.message = std::string(sys->label) + " encodes the birth year/month " + std::string(year) + "/" +
                    std::string(month) + " but birthDate is " + std::string(birth);
        f.location_suffix = ".birthDate";
        out->push_back(std::move(f));
      }
    }
  });
}

}  // namespace

void register_checks(Validator& validator) {
  validator.register_check("espace-ins-traits", ins_traits_check);
  CheckFunction any = [](const fhir::Node& n, std::vector<CheckFinding>* out) { identifier_check(n, out, false); };
  validator.register_check("espace-identifier-key", any);
  validator.register_check("espace-rpps-key", any);
  validator.register_check("espace-finess-key", any);
  validator.register_check("espace-siret-key", any);
  validator.register_check("espace-ins-key",
                           [](const fhir::Node& n, std::vector<CheckFinding>* out) { identifier_check(n, out, true); });
}

}  // namespace espace::profiles::fr
