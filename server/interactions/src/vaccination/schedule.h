// The French vaccination schedule as data (server/interactions/data/
// vaccination-schedule.json) and its evaluation for one patient on one date.
// Pure functions of their inputs: the operations read the storage and call
// these; the data-driven tests call them directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "espace/fhir/status.h"

namespace espace::interactions::vaccination {

// ---- civil dates (proleptic Gregorian), as day numbers since 1970-01-01 ----

struct CivilDate {
  int year = 1970, month = 1, day = 1;
};

int64_t day_number(const CivilDate& d);
CivilDate civil_date(int64_t day);
// "2026-11-23" or the date part of a dateTime ("2026-11-23T10:00:00+01:00").
// Partial dates are refused unless allow_partial, which reads "2026" as
// 2026-01-01 and "2026-11" as 2026-11-01 (an Immunization recorded to the month).
bool parse_date(std::string_view text, int64_t* day, bool allow_partial = false);
std::string format_date(int64_t day);

// An age or interval: years and months move the calendar date (the day of the
// month is clamped to the month's end), then days are added.
struct Age {
  int years = 0, months = 0, days = 0;
};
// "11y6m", "6w", "45d", "0d".
bool parse_age(std::string_view text, Age* out);
int64_t add_age(int64_t day, const Age& age);

// ---- the schedule ----

struct Disease {
  std::string key, display, snomed;
};

struct Vaccine {
  std::string atc, display;
  std::vector<std::string> diseases;  // Disease keys
};

struct DoseRule {
  Age age;                          // due at this age
  Age latest;                       // overdue after this age
  std::optional<Age> min_interval;  // after the previous dose taken by the group
};

struct Stage {
  std::string id, display, vaccine;  // vaccine: ATC code to recommend (group's when empty)
  Age count_from, until;             // doses given at ages in [count_from, until) count; open while age < until
  std::optional<int64_t> born_on_or_after;
  std::vector<std::string> sexes;    // administrative genders; empty: all
  std::optional<Age> scheme_start_before, scheme_start_from;
  std::string alternative_to;        // skipped when that stage applied
  std::vector<DoseRule> doses;
};

struct Seasonal {
  std::string id, display;
  Age from;
  int start_month = 10, start_day = 1, end_month = 1, end_day = 31;
  int early_days = 0;  // doses this many days before the campaign count for it
};

struct Group {
  std::string key, display;
  std::string disease;                      // the Disease key whose doses count
  std::vector<std::string> target_diseases;
  std::string vaccine;                      // ATC code recommended by default
  std::vector<Stage> stages;
  std::optional<Seasonal> seasonal;
  bool risk_groups_only = false;
};

struct Schedule {
  std::string source;
  std::string rule_system, group_system, disease_system;
  int horizon_days = 92;
  int grace_days = 28;
  std::vector<Disease> diseases;
  std::vector<Vaccine> vaccines;
  std::vector<Group> groups;

  // Parses and checks the data file (unknown disease keys, malformed ages, ...).
  static fhir::Status parse(std::string_view json, Schedule* out);
  // The server's schedule, read once from the data directory.
  static fhir::Status get(const Schedule** out);

  const Disease* disease(std::string_view key) const;
  const Vaccine* vaccine(std::string_view atc) const;
  const Group* group(std::string_view key) const;

  // The Disease keys an Immunization protects against: from its vaccine code
  // (ATC, any system) when the schedule knows it, else from its target
  // diseases (SNOMED CT or our disease system). Codings are (system, code).
  std::vector<std::string> dose_diseases(const std::vector<std::pair<std::string, std::string>>& vaccine_codes,
                                         const std::vector<std::pair<std::string, std::string>>& target_diseases) const;
};

// ---- evaluation ----

struct PatientFacts {
  int64_t birth = 0;   // day number
  std::string gender;  // administrative gender
};

struct DoseFact {
  std::string id;                     // Immunization id (supportingImmunization)
  int64_t day = 0;
  std::vector<std::string> diseases;  // Disease keys
};

struct Line {
  const Group* group = nullptr;
  std::string status;                 // due, overdue, complete (immunization-recommendation-status)
  std::string rule_id, rule_display;  // stage or seasonal rule
  std::string vaccine;                // ATC code to give
  int dose_number = 0;                // of the rule's series: the next dose, or the last one when complete
  int series_doses = 0;
  std::optional<int64_t> due;         // next dose due (also for complete lines with a later stage)
  std::optional<int64_t> overdue_after;
  std::vector<std::string> supporting;  // ids of the doses the rule counted
};

// One line per group that concerns the patient on `today`, in the order of the
// schedule's groups. Only completed doses belong in `doses`.
std::vector<Line> evaluate(const Schedule& schedule, const PatientFacts& patient, const std::vector<DoseFact>& doses,
                           int64_t today);

}  // namespace espace::interactions::vaccination
