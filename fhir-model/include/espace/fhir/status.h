// Status values and OperationOutcome issues shared by every layer.
//
// Errors are values, not exceptions, on every path that handles client input:
// a parser or an interaction returns a Status, and the HTTP layer maps its
// category to one status code and one OperationOutcome (server/http/errors.h).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace espace::fhir {

// Issue severity and type follow the R4 value sets issue-severity and
// issue-type (hl7.org/fhir/R4/valueset-issue-type.html).
enum class Severity { Fatal, Error, Warning, Information };

struct Issue {
  Severity severity = Severity::Error;
  std::string code = "invalid";   // issue-type code, e.g. "structure", "required", "not-found"
  std::string diagnostics;        // a sentence a human understands; never patient data
  std::string expression;         // FHIRPath location, e.g. "Patient.name[0].given[1]"
  int line = 0;                   // 1-based position in the input when known, 0 otherwise
  int column = 0;
  std::string message_id;         // stable id tests can assert, e.g. "json-unknown-element"
  // Where in a non-FHIR input (a CDA document): an XPath, rendered in
  // OperationOutcome.issue.location as R4 defines that element.
  std::string location;
};

// The kind of failure; the HTTP layer turns each into exactly one status code.
enum class ErrorCategory {
  None,
  Invalid,             // 400: malformed input, bad parameter
  Unprocessable,       // 422: well-formed but fails business rules / profiles
  NotFound,            // 404
  Gone,                // 410: deleted
  Conflict,            // 409: id/version conflict, duplicate
  PreconditionFailed,  // 412: If-Match / conditional with several matches
  NotAllowed,          // 405
  NotAcceptable,       // 406
  TooLarge,            // 413
  UnsupportedMedia,    // 415
  Unauthorized,        // 401
  Forbidden,           // 403
  NotModified,         // 304 (not an error, but short-circuits like one)
  Unavailable,         // 503: shutting down / overloaded
  Internal,            // 500: a bug or an I/O failure of ours
};

class Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(ErrorCategory category, Issue issue) {
    Status s;
    s.category_ = category;
    s.issues_.push_back(std::move(issue));
    return s;
  }
  // Shorthand for the common one-issue case.
  static Status error(ErrorCategory category, std::string issue_code, std::string diagnostics,
                      std::string expression = {}) {
    Issue i;
    i.code = std::move(issue_code);
    i.diagnostics = std::move(diagnostics);
    i.expression = std::move(expression);
    return error(category, std::move(i));
  }

  bool is_ok() const { return category_ == ErrorCategory::None; }
  explicit operator bool() const { return is_ok(); }
  ErrorCategory category() const { return category_; }
  const std::vector<Issue>& issues() const { return issues_; }
  std::vector<Issue>& issues() { return issues_; }
  void add(Issue issue) { issues_.push_back(std::move(issue)); }
  void set_category(ErrorCategory c) { category_ = c; }
  // First diagnostics line, for logs and exceptions in tools.
  std::string message() const { return issues_.empty() ? std::string() : issues_.front().diagnostics; }

 private:
  ErrorCategory category_ = ErrorCategory::None;
  std::vector<Issue> issues_;
};

const char* severity_code(Severity s);

// The code system of Issue::message_id in OperationOutcome.issue.details.
inline constexpr const char* kMessageIdSystem = "https://espace.example/fhir/CodeSystem/message-id";

// An OperationOutcome resource as FHIR JSON text: message ids in
// issue.details.coding, XPaths and line/column in issue.location, FHIRPath
// locations in issue.expression.
std::string outcome_json(const std::vector<Issue>& issues);

}  // namespace espace::fhir
