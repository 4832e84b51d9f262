// Control keys of the French national identifiers. The good values were
// computed from the published algorithms (not real people or organizations);
// each test also changes one character and expects the check to fail.
#include <catch2/catch.hpp>

#include "espace/profiles/french_identifiers.h"

using namespace espace::profiles::fr;

TEST_CASE("NIR key: 97 - (13 digits mod 97), Corsica 2A/2B as 19/18", "[profiles][identifiers]") {
  CHECK(nir_key("1841275056123") == "55");
  CHECK(nir_key("2900575123456") == "69");
  CHECK(nir_key("290052A004017") == "61");  // 2A counts as 19
  CHECK(nir_key("290052B004017") == "88");  // 2B counts as 18
  CHECK(nir_key("1800199123456") == "91");
  CHECK(nir_key("29005XA004017").empty());
  CHECK(nir_key("290053A004017").empty());  // only department 2A/2B has a letter
  CHECK(nir_key("184127505612").empty());

  KeyCheck good = check_nir("184127505612355");
  CHECK(good.well_formed);
  CHECK(good.key_checked);
  CHECK(good.key_ok);
  KeyCheck bad = check_nir("184127505612354");
  CHECK(bad.well_formed);
  CHECK_FALSE(bad.key_ok);
  CHECK(bad.expected_key == "55");
  CHECK(check_nir("290052A00401761").key_ok);
  CHECK_FALSE(check_nir("290052B00401761").key_ok);
  CHECK_FALSE(check_nir("18412750561235").well_formed);   // 14 characters
  CHECK_FALSE(check_nir("584127505612355").well_formed);  // sex digit 5
  CHECK_FALSE(check_nir("1841275056123AB").well_formed);  // key not digits
}

TEST_CASE("Luhn keys: RPPS, FINESS, SIREN, SIRET", "[profiles][identifiers]") {
  CHECK(luhn_digit("1000123456") == "5");
  CHECK(luhn_digit("12a").empty());
  CHECK(check_rpps("10001234565").key_ok);
  CHECK_FALSE(check_rpps("10001234566").key_ok);
  CHECK(check_rpps("10001234566").expected_key == "5");
  CHECK_FALSE(check_rpps("1000123456").well_formed);

  CHECK(check_finess("750000010").key_ok);
  CHECK(check_finess("130000201").key_ok);
  CHECK_FALSE(check_finess("750000011").key_ok);
  KeyCheck corsica = check_finess("2A0000012");
  CHECK(corsica.well_formed);
  CHECK_FALSE(corsica.key_checked);  // honest: not claimed valid
  CHECK_FALSE(check_finess("75000001").well_formed);

  CHECK(check_siret("12345678000014").key_ok);
  CHECK_FALSE(check_siret("12345678000015").key_ok);
  // La Poste (SIREN 356000000): digit sum multiple of 5 instead of Luhn.
  CHECK(check_siret("35600000000001").key_ok);
  CHECK_FALSE(check_siret("35600000000002").key_ok);

  std::string what;
  CHECK(check_identifier(Scheme::Sirene, "264403106", &what).key_ok);
  CHECK(what == "SIREN");
  CHECK_FALSE(check_identifier(Scheme::Sirene, "264403107").key_ok);
}

TEST_CASE("IDNPS and IDNST prefixes", "[profiles][identifiers]") {
  std::string what;
  CHECK(check_identifier(Scheme::Idnps, "810001234565", &what).key_ok);
  CHECK(what == "RPPS");
  KeyCheck adeli = check_identifier(Scheme::Idnps, "0751234567", &what);
  CHECK(what == "ADELI");
  CHECK(adeli.well_formed);
  CHECK_FALSE(adeli.key_checked);
  CHECK_FALSE(check_identifier(Scheme::Idnps, "1234", &what).well_formed);
  CHECK(check_identifier(Scheme::Idnst, "1750000010", &what).key_ok);
  CHECK(what == "FINESS");
  CHECK(check_identifier(Scheme::Idnst, "312345678000014", &what).key_ok);
  CHECK(what == "SIRET");
  CHECK_FALSE(check_identifier(Scheme::Idnst, "312345678000015").key_ok);
}

TEST_CASE("identifier systems: production and test OIDs", "[profiles][identifiers]") {
  const IdentifierSystem* nir = find_identifier_system("urn:oid:1.2.250.1.213.1.4.8");
  REQUIRE(nir);
  CHECK(nir->production);
  const IdentifierSystem* test = find_identifier_system("urn:oid:1.2.250.1.213.1.4.10");
  REQUIRE(test);
  CHECK_FALSE(test->production);
  CHECK(find_identifier_system("urn:oid:1.2.250.1.213.1.4.9")->scheme == Scheme::Nir);
  CHECK(find_identifier_system("http://example.org") == nullptr);
}
