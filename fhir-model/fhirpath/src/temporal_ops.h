// Internal helpers shared by the FHIRPath sources.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "espace/fhirpath/value.h"

namespace espace::fhirpath {

int days_in_month(int year, int month);
int64_t days_from_civil(int64_t y, unsigned m, unsigned d);
void civil_from_days(int64_t z, int* y, int* m, int* d);
int64_t to_epoch_ms(const Temporal& t);   // local fields, ignoring the offset
void from_epoch_ms(int64_t ms, Temporal* t);

// Date/time + quantity (N1 §6.6 "Date/Time Arithmetic"). Error text in *error.
std::optional<Temporal> add_duration(const Temporal& t, const Quantity& q, bool subtract, std::string* error);

// UCUM: a unit reduced to a factor on base units and their exponents.
struct CanonicalUnit {
  Decimal factor{1, 0};
  std::array<int8_t, 9> dims{};  // m g s mol K A cd rad arbitrary
  bool ok = false;
};
CanonicalUnit ucum_canonical(std::string_view unit);
// Maps calendar keywords (week, days, ...) to UCUM; "year"/"month" have no
// exact UCUM equivalent and stay as they are.
std::string calendar_to_ucum(std::string_view keyword);
bool is_calendar_keyword(std::string_view word);

// Quantity comparison: 0/<0/>0, nullopt when units are not comparable.
std::optional<int> compare_quantities(const Quantity& a, const Quantity& b);
// Converts q to `unit`; nullopt when not comparable.
std::optional<Decimal> convert_quantity(const Quantity& q, std::string_view unit, bool calendar);
bool quantities_equivalent(const Quantity& a, const Quantity& b);

}  // namespace espace::fhirpath
