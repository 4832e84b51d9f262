// Organised-screening reminders (server/interactions/data/screening-reminders.json):
// which programme is due for a patient on a date, from age, sex and the last test.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "schedule.h"

namespace espace::interactions::vaccination {

using Coding = std::pair<std::string, std::string>;  // (system, code)

struct ScreeningProgramme {
  std::string id, display;
  std::vector<std::string> sexes;  // administrative genders it applies to
  Age from, until, every;
  std::vector<Coding> codes;       // tests that count as done
};

struct ScreeningRules {
  std::string rule_system;
  int horizon_days = 92;
  std::vector<ScreeningProgramme> programmes;

  static fhir::Status parse(std::string_view json, ScreeningRules* out);
  static fhir::Status get(const ScreeningRules** out);  // the server's file, read once
};

// A test the patient had (an Observation, Procedure or DiagnosticReport).
struct ScreeningTest {
  int64_t day = 0;
  std::vector<Coding> codes;
};

struct ScreeningReminder {
  const ScreeningProgramme* programme = nullptr;
  std::string status;  // "due" (date reached) or "upcoming" (within the horizon)
  int64_t due = 0;
  std::optional<int64_t> last_done;
};

std::vector<ScreeningReminder> screening_reminders(const ScreeningRules& rules, const PatientFacts& patient,
                                                   const std::vector<ScreeningTest>& tests, int64_t today);

}  // namespace espace::interactions::vaccination
