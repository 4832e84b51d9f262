// OperationOutcome rendering of Status issues.
#include "espace/fhir/status.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace espace::fhir {

const char* severity_code(Severity s) {
  switch (s) {
    case Severity::Fatal: return "fatal";
    case Severity::Error: return "error";
    case Severity::Warning: return "warning";
    case Severity::Information: return "information";
  }
  return "error";
}

std::string outcome_json(const std::vector<Issue>& issues) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  auto string = [&](const std::string& s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); };
  w.StartObject();
  w.Key("resourceType");
  w.String("OperationOutcome");
  w.Key("issue");
  w.StartArray();
  // OperationOutcome.issue is 1..*: an empty list reports success.
  if (issues.empty()) {
    w.StartObject();
    w.Key("severity");
    w.String("information");
    w.Key("code");
    w.String("informational");
    w.Key("diagnostics");
    w.String("All OK");
    w.EndObject();
  }
  for (const Issue& issue : issues) {
    w.StartObject();
    w.Key("severity");
    w.String(severity_code(issue.severity));
    w.Key("code");
    string(issue.code.empty() ? std::string("processing") : issue.code);
    if (!issue.message_id.empty()) {
      // The stable message id, machine-readable: issue.details.coding in our code system.
      w.Key("details");
      w.StartObject();
      w.Key("coding");
      w.StartArray();
      w.StartObject();
      w.Key("system");
      w.String(kMessageIdSystem);
      w.Key("code");
      string(issue.message_id);
      w.EndObject();
      w.EndArray();
      w.EndObject();
    }
    std::string diagnostics = issue.diagnostics;
    if (issue.line > 0) {
      diagnostics += diagnostics.empty() ? "" : " ";
      diagnostics += "(at line " + std::to_string(issue.line);
      if (issue.column > 0) diagnostics += ", column " + std::to_string(issue.column);
      diagnostics += ")";
    }
    if (!diagnostics.empty()) {
      w.Key("diagnostics");
      string(diagnostics);
    }
    if (issue.line > 0 || !issue.location.empty()) {
      // An XPath into a non-FHIR input, else (same convention as other
      // servers) a textual position.
      w.Key("location");
      w.StartArray();
      if (!issue.location.empty()) string(issue.location);
      if (issue.line > 0) string("Line[" + std::to_string(issue.line) + "] Col[" + std::to_string(issue.column) + "]");
      w.EndArray();
    }
    if (!issue.expression.empty()) {
      w.Key("expression");
      w.StartArray();
      string(issue.expression);
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace espace::fhir
