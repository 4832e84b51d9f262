// French national identifiers: their systems and control keys.
//
// INS-NIR / INS-NIA (15 characters: 13 + a key of 97 - (n mod 97); Corsican
// departments 2A and 2B count as 19 and 18), RPPS (11 digits, Luhn), ADELI
// (9 characters, no published key), FINESS (9 characters, Luhn), SIRET
// (14 digits, Luhn; La Poste establishments: digit sum multiple of 5), SIREN
// (9 digits, Luhn).
// The table of systems is data (kIdentifierSystems in french_identifiers.cpp);
// the validator runs these checks as the named constraints of our profiles.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace espace::profiles {

class Validator;

namespace fr {

enum class Scheme { Nir, Idnps, Idnst, Rpps, Adeli, Finess, Siret, Sirene };

struct IdentifierSystem {
  std::string_view system;  // "urn:oid:1.2.250.1.213.1.4.8"
  std::string_view label;   // "INS-NIR"
  Scheme scheme;
  bool production;  // false for the INS test and demonstration OIDs: a bad key is a warning
};

const std::vector<IdentifierSystem>& identifier_systems();
const IdentifierSystem* find_identifier_system(std::string_view system);  // nullptr when not French

struct KeyCheck {
  bool well_formed = false;  // length and characters
  bool key_checked = false;  // false when the scheme has no key (ADELI) or cannot compute it
  bool key_ok = false;
  std::string expected_key;  // when well formed and key_checked
  std::string reason;        // why not well formed / not checked
};

// The NIR key (2 digits) of the first 13 characters, or "" when malformed.
std::string nir_key(std::string_view first13);
// The Luhn check digit to append to `digits`, or "" when not all digits.
std::string luhn_digit(std::string_view digits);

KeyCheck check_nir(std::string_view value);
KeyCheck check_rpps(std::string_view value);
KeyCheck check_adeli(std::string_view value);
KeyCheck check_finess(std::string_view value);
KeyCheck check_siret(std::string_view value);
// By scheme; Idnps (urn:oid:1.2.250.1.71.4.2.1) and Idnst (1.2.250.1.71.4.2.2)
// hold several national identifiers told apart by their length and prefix.
KeyCheck check_identifier(Scheme scheme, std::string_view value, std::string* what = nullptr);

// Registers "espace-identifier-key" (any French identifier system) and its
// aliases "espace-ins-key", "espace-rpps-key", "espace-finess-key",
// "espace-siret-key" on the validator: message ids identifier-key-invalid and
// identifier-format-invalid (on Identifier.value); and "espace-ins-traits"
// (on a Patient): the sex and birth year/month the NIR encodes agree with
// gender and birthDate, message id ins-traits-mismatch (error; warning for
// the test/demonstration OIDs).
void register_checks(Validator& validator);

}  // namespace fr
}  // namespace espace::profiles
