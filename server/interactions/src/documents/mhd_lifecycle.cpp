// The DMP document lifecycle after submission (choices in test-data/mhd/README.md):
// - metadata update: a JSON Patch on a DocumentReference may touch only what
//   the DMP lets a sharer change afterwards — the confidentiality
//   (securityLabel, meta.security), the archive flag (a meta.tag of ours) and
//   the status, only towards entered-in-error (the logical deletion);
// - replacement is an ITI-65 submission (mhd_provide.cpp);
// - default searches leave out deleted (entered-in-error) and archived
//   documents unless the query asks about status or _tag.
#include <rapidjson/document.h>

#include "mhd_provide.h"

namespace espace::interactions::mhd {

namespace {

bool path_allowed(std::string_view path) {
  for (std::string_view prefix : {"/securityLabel", "/meta/security", "/meta/tag"})
    if (path.rfind(prefix, 0) == 0 && (path.size() == prefix.size() || path[prefix.size()] == '/')) return true;
  return path == "/status";
}

bool names_param(const std::vector<std::pair<std::string, std::string>>& params, std::string_view code) {
  for (const auto& [name, value] : params) {
    std::string_view n = name;
    if (n.rfind(code, 0) == 0 && (n.size() == code.size() || n[code.size()] == ':' || n[code.size()] == '.'))
      return true;
  }
  return false;
}

}  // namespace

Status check_document_patch_paths(std::string_view patch_json) {
  rapidjson::Document doc;
  doc.Parse(patch_json.data(), patch_json.size());
  if (doc.HasParseError() || !doc.IsArray()) return Status::ok();  // the patch engine reports malformed patches
  rapidjson::SizeType index = 0;
  for (const auto& op : doc.GetArray()) {
    std::string where = "Patch[" + std::to_string(index++) + "]";
    if (!op.IsObject()) continue;
    auto member = [&](const char* key) -> std::string_view {
      auto it = op.FindMember(key);
      return it != op.MemberEnd() && it->value.IsString()
                 ? std::string_view(it->value.GetString(), it->value.GetStringLength())
                 : std::string_view();
    };
    if (member("op") == "test") continue;  // reads only
    for (const char* key : {"path", "from"}) {
      std::string_view path = member(key);
      if (std::string_view(key) == "from" && path.empty()) continue;
      if (!path_allowed(path))
        return Status::error(ErrorCategory::Unprocessable, "business-rule",
                             "the DMP allows changing only securityLabel, meta.security, meta.tag (archive flag) and "
                             "status (to entered-in-error) of a shared document; " +
                                 std::string(key) + " '" + std::string(path) + "' is not one of them",
                             where + "." + key);
    }
  }
  return Status::ok();
}

Status check_document_status_change(std::string_view current_json, std::string_view patched_status) {
  std::string current_status;
  rapidjson::Document current;
  current.Parse(current_json.data(), current_json.size());
  if (!current.HasParseError() && current.IsObject() && current.HasMember("status") && current["status"].IsString())
    current_status = current["status"].GetString();
  if (patched_status != current_status && patched_status != "entered-in-error")
    return Status::error(ErrorCategory::Unprocessable, "business-rule",
                         "a document's status changes only to entered-in-error (deletion); '" +
                             std::string(patched_status) + "' is set by the server (superseded by a replacement)",
                         "DocumentReference.status");
  if (current_status == "entered-in-error" && patched_status != current_status)
    return Status::error(ErrorCategory::Unprocessable, "business-rule", "a deleted document cannot be restored",
                         "DocumentReference.status");
  return Status::ok();
}

void add_default_document_filters(const std::vector<std::pair<std::string, std::string>>& params,
                                  storage::SearchQuery* query) {
  if (!names_param(params, "status") && !names_param(params, "_id")) {
    storage::Condition c;
    c.kind = storage::Condition::Kind::AnyOf;
    storage::IndexTest t;
    t.param = "status";
    t.kind = "token";
    t.value_op = storage::TextOp::Equal;
    t.value = "entered-in-error";
    c.any_of.push_back(std::move(t));
    c.negate = true;
    query->all_of.push_back(std::move(c));
  }
  if (!names_param(params, "_tag") && !names_param(params, "_id")) {
    storage::Condition c;
    c.kind = storage::Condition::Kind::AnyOf;
    storage::IndexTest t;
    t.param = "_tag";
    t.kind = "token";
    t.system = std::string(kDocumentStateSystem);
    t.value_op = storage::TextOp::Equal;
    t.value = kArchivedCode;
    c.any_of.push_back(std::move(t));
    c.negate = true;
    query->all_of.push_back(std::move(c));
  }
}

}  // namespace espace::interactions::mhd
