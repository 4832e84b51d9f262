// The CI-SIS header rules and the header -> DocumentReference mapping, both
// read from data files (server/interactions/data/cda-header-rules.json and
// cda-header-mapping.json); this file only knows the kinds of checks and of
// value conversions they may name.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "cda_path.h"
#include "cda_xml.h"
#include "espace/fhir/status.h"

namespace espace::interactions::cda {

struct HeaderRule {
  enum class Check { Present, Equals, OneOf, Contains, InTable, Format };
  std::string id;             // stable, e.g. "cda-patient-ins-key"; the issue's message_id
  std::string text;           // what the rule asks, for the diagnostics
  bool has_context = false;   // applied once per element the context path selects
  Path context, path;
  bool has_when = false;      // applied only when this path matches something
  Path when;
  Check check = Check::Present;
  std::string value, table, format;
  std::vector<std::string> values;
  size_t min = 1;             // matches required (0: optional, values checked when present)
  size_t max = static_cast<size_t>(-1);
  bool error = true;          // false: a warning
};

// One line of the mapping: a value (or values) taken from the header,
// converted ("as"), written at a FHIR JSON location of the DocumentReference.
struct MappingField {
  std::vector<Path> sources;  // the first that yields a value is used
  std::string as;             // identifier, unique-id, coding, text, datetime, date, table, human-name, name-text, const
  std::string table;
  const rapidjson::Value* constant = nullptr;  // for "as": "const" (inside the config's mapping_doc)
  std::string target;         // e.g. "securityLabel[].coding[]"
  bool first_only = false;
  // for_each: the sources select context elements; `fields` are relative.
  bool for_each = false;
  std::vector<MappingField> fields;
};

struct CdaConfig {
  std::vector<HeaderRule> rules;
  rapidjson::Document mapping_doc;  // owns templates and tables
  const rapidjson::Value* resource_template = nullptr;
  const rapidjson::Value* tables = nullptr;
  std::map<std::string, std::string, std::less<>> code_systems;  // OID -> FHIR system URI
  std::vector<MappingField> fields;
};

// Loads both data files once (thread-safe); later calls return the same
// config. Internal error naming the file and the problem when they are bad.
fhir::Status cda_config(const CdaConfig** out);
// Builds a config from the texts of the two files (tests, reloading).
fhir::Status load_cda_config(std::string_view rules_json, std::string_view mapping_json, CdaConfig* out);

// Every failed rule as an issue: message_id the rule id, location the
// XPath of the problem, severity error or warning.
std::vector<fhir::Issue> check_header(const CdaConfig& config, const XmlElement& root);

// Writes the mapped header into *out (an object, started from the
// template). Values the rules let through always convert; a value that does
// not is skipped.
void map_header(const CdaConfig& config, const XmlElement& root, rapidjson::Document* out);

// Value checks the rules name by "format" (exposed for tests).
bool check_format(std::string_view format, std::string_view value);
// HL7 v3 TS (YYYY[MM[DD[HH[MM[SS[.s]]]]]][+-ZZZZ]) -> FHIR dateTime; a time
// without zone is refused (FHIR requires one). False when not a TS.
bool ts_to_datetime(std::string_view ts, std::string* out);
bool ts_to_date(std::string_view ts, std::string* out);

}  // namespace espace::interactions::cda
