// FHIRPath values (hl7.org/fhirpath/N1 §4 "Types"): System primitives that are
// computed or written as literals, and references to FHIR Node trees.
//
// A Value is small and cheap to copy: a node is referenced by pointer (the
// caller keeps the tree alive while results are used), strings are owned.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/node.h"

namespace espace::fhirpath {

// Exact decimal: mant / 10^scale. The scale is the number of digits after the
// point as written ("1.50" has scale 2), which FHIRPath needs for precision(),
// equivalence and boundaries.
struct Decimal {
  __int128 mant = 0;
  int scale = 0;
  bool negative_zero = false;  // only for display of a zero reached from below ("-0.0")

  static constexpr int kMaxScale = 28;

  static std::optional<Decimal> parse(std::string_view text);
  static Decimal from_int(int64_t v) { return Decimal{v, 0}; }
  // Rounded to `digits` decimals (at most kMaxScale), trailing zeros removed.
  static Decimal from_double(double v, int digits = 15);
  std::string to_string() const;
  double to_double() const;
  bool is_zero() const { return mant == 0; }
  bool is_negative() const { return mant < 0; }
  // Same value with exactly `new_scale` decimals (rounding half away from zero when reducing).
  Decimal rescaled(int new_scale) const;
  Decimal trimmed() const;  // trailing fractional zeros removed
  Decimal truncated() const;  // toward zero, scale 0
  Decimal floor() const;
  Decimal ceiling() const;
};

int compare(const Decimal& a, const Decimal& b);
Decimal operator+(const Decimal& a, const Decimal& b);
Decimal operator-(const Decimal& a, const Decimal& b);
Decimal operator*(const Decimal& a, const Decimal& b);
Decimal operator-(const Decimal& a);
// Quotient with enough decimals for FHIRPath's `/` (nullopt on division by zero).
std::optional<Decimal> divide(const Decimal& a, const Decimal& b);

// Date, DateTime and Time share one representation with a precision.
enum class TemporalKind : uint8_t { Date, DateTime, Time };
enum class Precision : uint8_t { Year = 1, Month, Day, Hour, Minute, Second, Millisecond };

struct Temporal {
  TemporalKind kind = TemporalKind::Date;
  Precision precision = Precision::Year;
  int16_t year = 0;
  uint8_t month = 1, day = 1, hour = 0, minute = 0, second = 0;
  uint16_t millisecond = 0;
  bool has_tz = false;
  int16_t tz_minutes = 0;  // offset east of UTC

  // Lexical forms without '@': "2014-01-05", "2014-01-05T10:30:00.000+01:00",
  // "10:30" (Time, no leading T). Partial forms are allowed.
  static std::optional<Temporal> parse_date(std::string_view s);
  static std::optional<Temporal> parse_datetime(std::string_view s);
  static std::optional<Temporal> parse_time(std::string_view s);
  std::string to_string() const;  // without '@'
};

// 0 equal, <0, >0; nullopt when precision differs at the point of decision.
std::optional<int> compare(const Temporal& a, const Temporal& b);

struct Quantity {
  Decimal value;
  std::string unit;        // UCUM code, or a calendar keyword ("week", "days")
  bool calendar = false;   // unit is a calendar duration keyword (unquoted in FHIRPath)
  std::string to_string() const;  // 4.5 'mg' / 1 week
};

enum class ValueKind : uint8_t { Node, Boolean, Integer, Decimal, String, Date, DateTime, Time, Quantity, TypeInfo };

class Value {
 public:
  Value() = default;
  static Value of_node(const fhir::Node* n) { Value v; v.kind_ = ValueKind::Node; v.u_.node = n; return v; }
  static Value of_bool(bool b) { Value v; v.kind_ = ValueKind::Boolean; v.u_.i = b; return v; }
  static Value of_int(int64_t i) { Value v; v.kind_ = ValueKind::Integer; v.u_.i = i; return v; }
  static Value of_decimal(const Decimal& d) { Value v; v.kind_ = ValueKind::Decimal; v.u_.d = d; return v; }
  static Value of_string(std::string s) { Value v; v.kind_ = ValueKind::String; v.s_ = std::move(s); return v; }
  static Value of_temporal(const Temporal& t);
  static Value of_quantity(Quantity q);
  // A type reflection value (type() function): "System.Integer", "FHIR.Patient".
  static Value of_type_info(std::string qualified_name) {
    Value v; v.kind_ = ValueKind::TypeInfo; v.s_ = std::move(qualified_name); return v;
  }

  ValueKind kind() const { return kind_; }
  bool is_node() const { return kind_ == ValueKind::Node; }
  // Each accessor is meaningful for its kind only.
  const fhir::Node* node() const { return u_.node; }
  bool as_bool() const { return u_.i != 0; }
  int64_t as_int() const { return u_.i; }
  const Decimal& as_decimal() const { return u_.d; }
  const std::string& as_string() const { return s_; }
  const Temporal& as_temporal() const { return u_.t; }
  Quantity as_quantity() const { return Quantity{u_.d, s_, calendar_}; }

  // FHIRPath type name: for System values "Integer", "String", ...; for a node the FHIR type name.
  std::string type_name() const;
  bool is_system() const { return kind_ != ValueKind::Node; }

 private:
  // One payload at a time: the kind says which union member is live.
  union Payload {
    int64_t i;               // Boolean, Integer
    const fhir::Node* node;  // Node (not owned)
    Decimal d;               // Decimal, Quantity value
    Temporal t;              // Date, DateTime, Time
    Payload() : i(0) {}
  };
  ValueKind kind_ = ValueKind::Boolean;
  bool calendar_ = false;    // Quantity: unit is a calendar keyword
  Payload u_;
  std::string s_;            // String; Quantity unit; TypeInfo name
};

using Collection = std::vector<Value>;

// The System value of a FHIR primitive node (boolean→Boolean, integer types→Integer,
// decimal→Decimal, date→Date, dateTime/instant→DateTime, time→Time, others→String),
// of a Quantity-typed node (→Quantity), or the value itself when already System.
// nullopt when the node carries no value or cannot be converted.
std::optional<Value> to_system(const Value& v);

}  // namespace espace::fhirpath
