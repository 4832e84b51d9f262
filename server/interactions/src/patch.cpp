// patch with JSON Patch (RFC 6902) — hl7.org/fhir/R4/http.html#patch.
//
// The patch applies to the JSON form of the current version; the result is
// parsed again as a full resource, so a patch can never store something the
// JSON parser would refuse. Numbers keep their exact text: values are held
// with a one-letter tag ('n' number text, 's' string) so that decimals such as
// 1.50 survive and `test` compares like with like.
#include <rapidjson/document.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "common.h"
#include "documents/mhd_provide.h"
#include "espace/interactions/validate.h"
#include "espace/fhir/json.h"

namespace espace::interactions {

namespace {

using Doc = rapidjson::Document;
using Value = rapidjson::Value;

template <typename Handler>
struct TaggingHandler {
  Handler& h;
  std::string scratch;
  bool Null() { return h.Null(); }
  bool Bool(bool b) { return h.Bool(b); }
  bool Int(int) { return false; }
  bool Uint(unsigned) { return false; }
  bool Int64(int64_t) { return false; }
  bool Uint64(uint64_t) { return false; }
  bool Double(double) { return false; }
  bool tagged(char tag, const char* s, rapidjson::SizeType n) {
    scratch.assign(1, tag);
    scratch.append(s, n);
    return h.String(scratch.data(), static_cast<rapidjson::SizeType>(scratch.size()), true);
  }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) { return tagged('n', s, n); }
  bool String(const char* s, rapidjson::SizeType n, bool) { return tagged('s', s, n); }
  bool StartObject() { return h.StartObject(); }
  bool Key(const char* s, rapidjson::SizeType n, bool c) { return h.Key(s, n, c); }
  bool EndObject(rapidjson::SizeType n) { return h.EndObject(n); }
  bool StartArray() { return h.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return h.EndArray(n); }
};

Status parse_tagged(const std::string& text, Doc* doc, const char* what) {
  rapidjson::StringStream stream(text.c_str());
  rapidjson::Reader reader;
  rapidjson::ParseResult result;
  auto generate = [&](Doc& handler) {
    TaggingHandler<Doc> tagging{handler, {}};
    result = reader.Parse<rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseIterativeFlag>(stream, tagging);
    return static_cast<bool>(result);
  };
  doc->Populate(generate);
  if (!result)
    return Status::error(ErrorCategory::Invalid, "structure",
                         std::string(what) + " is not valid JSON (at offset " + std::to_string(result.Offset()) + ")");
  return Status::ok();
}

void write_tagged(const Value& v, rapidjson::Writer<rapidjson::StringBuffer>& w) {
  switch (v.GetType()) {
    case rapidjson::kNullType: w.Null(); break;
    case rapidjson::kFalseType: w.Bool(false); break;
    case rapidjson::kTrueType: w.Bool(true); break;
    case rapidjson::kStringType: {
      const char* s = v.GetString();
      rapidjson::SizeType n = v.GetStringLength();
      if (n > 0 && s[0] == 'n')
        w.RawValue(s + 1, n - 1, rapidjson::kNumberType);
      else
        w.String(s + 1, n - 1);
      break;
    }
    case rapidjson::kObjectType:
      w.StartObject();
      for (auto& m : v.GetObject()) {
        w.Key(m.name.GetString(), m.name.GetStringLength());
        write_tagged(m.value, w);
      }
      w.EndObject();
      break;
    case rapidjson::kArrayType:
      w.StartArray();
      for (auto& e : v.GetArray()) write_tagged(e, w);
      w.EndArray();
      break;
    case rapidjson::kNumberType: break;  // never produced by the tagging parser
  }
}

Status patch_error(const std::string& text, size_t op_index) {
  return Status::error(ErrorCategory::Unprocessable, "processing",
                       "JSON Patch operation " + std::to_string(op_index) + ": " + text);
}

// Splits an RFC 6901 pointer into unescaped tokens.
bool pointer_tokens(std::string_view pointer, std::vector<std::string>* tokens) {
  tokens->clear();
  if (pointer.empty()) return true;
  if (pointer.front() != '/') return false;
  pointer.remove_prefix(1);
  while (true) {
    size_t slash = pointer.find('/');
    std::string_view raw = pointer.substr(0, slash);
    std::string token;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '~') {
        if (i + 1 >= raw.size() || (raw[i + 1] != '0' && raw[i + 1] != '1')) return false;
        token.push_back(raw[i + 1] == '0' ? '~' : '/');
        ++i;
      } else {
        token.push_back(raw[i]);
      }
    }
    tokens->push_back(std::move(token));
    if (slash == std::string_view::npos) break;
    pointer.remove_prefix(slash + 1);
  }
  return true;
}

bool array_index(const std::string& token, size_t size, bool allow_end, size_t* index) {
  if (allow_end && token == "-") {
    *index = size;
    return true;
  }
  if (token.empty() || token.size() > 9 || (token.size() > 1 && token[0] == '0')) return false;
  size_t v = 0;
  for (char c : token) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<size_t>(c - '0');
  }
  if (v > (allow_end ? size : size - 1) || (!allow_end && size == 0)) return false;
  *index = v;
  return true;
}

// Finds the value a pointer designates, or nullptr.
Value* resolve(Value& root, const std::vector<std::string>& tokens) {
  Value* cur = &root;
  for (const std::string& t : tokens) {
    if (cur->IsObject()) {
      auto it = cur->FindMember(rapidjson::StringRef(t.data(), static_cast<rapidjson::SizeType>(t.size())));
      if (it == cur->MemberEnd()) return nullptr;
      cur = &it->value;
    } else if (cur->IsArray()) {
      size_t i = 0;
      if (!array_index(t, cur->Size(), false, &i)) return nullptr;
      cur = &(*cur)[static_cast<rapidjson::SizeType>(i)];
    } else {
      return nullptr;
    }
  }
  return cur;
}

// Removes the designated value and returns it in *removed.
bool remove_at(Value& root, const std::vector<std::string>& tokens, Value* removed, Doc::AllocatorType&) {
  if (tokens.empty()) return false;
  std::vector<std::string> parent_tokens(tokens.begin(), tokens.end() - 1);
  Value* parent = resolve(root, parent_tokens);
  if (!parent) return false;
  const std::string& last = tokens.back();
  if (parent->IsObject()) {
    auto it = parent->FindMember(rapidjson::StringRef(last.data(), static_cast<rapidjson::SizeType>(last.size())));
    if (it == parent->MemberEnd()) return false;
    *removed = std::move(it->value);
    parent->EraseMember(it);
    return true;
  }
  if (parent->IsArray()) {
    size_t i = 0;
    if (!array_index(last, parent->Size(), false, &i)) return false;
    *removed = std::move((*parent)[static_cast<rapidjson::SizeType>(i)]);
    parent->Erase(parent->Begin() + i);
    return true;
  }
  return false;
}

bool add_at(Value& root, const std::vector<std::string>& tokens, Value&& value, Doc::AllocatorType& alloc) {
  if (tokens.empty()) {
    root = std::move(value);
    return true;
  }
  std::vector<std::string> parent_tokens(tokens.begin(), tokens.end() - 1);
  Value* parent = resolve(root, parent_tokens);
  if (!parent) return false;
  const std::string& last = tokens.back();
  if (parent->IsObject()) {
    auto it = parent->FindMember(rapidjson::StringRef(last.data(), static_cast<rapidjson::SizeType>(last.size())));
    if (it != parent->MemberEnd()) {
      it->value = std::move(value);
    } else {
      parent->AddMember(Value(last.c_str(), static_cast<rapidjson::SizeType>(last.size()), alloc), value, alloc);
    }
    return true;
  }
  if (parent->IsArray()) {
    size_t i = 0;
    if (!array_index(last, parent->Size(), true, &i)) return false;
    parent->PushBack(Value(), alloc);  // grow, then shift into place
    for (size_t k = parent->Size() - 1; k > i; --k)
      (*parent)[static_cast<rapidjson::SizeType>(k)] = std::move((*parent)[static_cast<rapidjson::SizeType>(k - 1)]);
    (*parent)[static_cast<rapidjson::SizeType>(i)] = std::move(value);
    return true;
  }
  return false;
}

Status apply_json_patch(Doc& target, const Doc& patch) {
  if (!patch.IsArray())
    return Status::error(ErrorCategory::Invalid, "structure", "a JSON Patch document is an array of operations");
  auto& alloc = target.GetAllocator();
  size_t n = 0;
  for (const Value& op : patch.GetArray()) {
    ++n;
    if (!op.IsObject()) return Status::error(ErrorCategory::Invalid, "structure", "JSON Patch operation " +
                                                                                       std::to_string(n) +
                                                                                       " is not an object");
    auto string_member = [&](const char* name, std::string* out) {
      auto it = op.FindMember(name);
      if (it == op.MemberEnd() || !it->value.IsString() || it->value.GetStringLength() == 0 ||
          it->value.GetString()[0] != 's')
        return false;
      out->assign(it->value.GetString() + 1, it->value.GetStringLength() - 1);
      return true;
    };
    std::string name, path, from;
    if (!string_member("op", &name) || !string_member("path", &path))
      return Status::error(ErrorCategory::Invalid, "structure",
                           "JSON Patch operation " + std::to_string(n) + " needs string members op and path");
    std::vector<std::string> tokens, from_tokens;
    if (!pointer_tokens(path, &tokens))
      return Status::error(ErrorCategory::Invalid, "structure",
                           "JSON Patch operation " + std::to_string(n) + ": malformed path '" + path + "'");
    auto value_member = op.FindMember("value");
    bool needs_value = name == "add" || name == "replace" || name == "test";
    if (needs_value && value_member == op.MemberEnd())
      return Status::error(ErrorCategory::Invalid, "structure",
                           "JSON Patch operation " + std::to_string(n) + " (" + name + ") needs a value");
    bool needs_from = name == "move" || name == "copy";
    if (needs_from && (!string_member("from", &from) || !pointer_tokens(from, &from_tokens)))
      return Status::error(ErrorCategory::Invalid, "structure",
                           "JSON Patch operation " + std::to_string(n) + " (" + name + ") needs a valid from");
    if (name == "add") {
      Value v(value_member->value, alloc);
      if (!add_at(target, tokens, std::move(v), alloc)) return patch_error("cannot add at " + path, n);
    } else if (name == "remove") {
      Value removed;
      if (tokens.empty() || !remove_at(target, tokens, &removed, alloc))
        return patch_error("nothing to remove at " + path, n);
    } else if (name == "replace") {
      Value* existing = resolve(target, tokens);
      if (!existing) return patch_error("nothing to replace at " + path, n);
      *existing = Value(value_member->value, alloc);
    } else if (name == "move") {
      if (tokens.size() > from_tokens.size() &&
          std::equal(from_tokens.begin(), from_tokens.end(), tokens.begin()))
        return patch_error("cannot move a value into itself", n);
      Value moved;
      if (!remove_at(target, from_tokens, &moved, alloc)) return patch_error("nothing to move at " + from, n);
      if (!add_at(target, tokens, std::move(moved), alloc)) return patch_error("cannot move to " + path, n);
    } else if (name == "copy") {
      Value* source = resolve(target, from_tokens);
      if (!source) return patch_error("nothing to copy at " + from, n);
      Value copy(*source, alloc);
      if (!add_at(target, tokens, std::move(copy), alloc)) return patch_error("cannot copy to " + path, n);
    } else if (name == "test") {
      Value* existing = resolve(target, tokens);
      if (!existing || *existing != value_member->value) return patch_error("test failed at " + path, n);
    } else {
      return Status::error(ErrorCategory::Invalid, "structure",
                           "JSON Patch operation " + std::to_string(n) + ": unknown op '" + name + "'");
    }
  }
  return Status::ok();
}

}  // namespace

FhirResponse do_patch(const Services& services, const FhirRequest& req) {
  if (req.content_type != "application/json-patch+json")
    return error_response(ErrorCategory::UnsupportedMedia, "not-supported",
                          "patch accepts application/json-patch+json (got '" + req.content_type + "')");
  Doc patch;
  Status s = parse_tagged(req.body, &patch, "the JSON Patch document");
  if (!s) return error_response(std::move(s));

  if (req.type == "DocumentReference")
    if (Status paths = mhd::check_document_patch_paths(req.body); !paths) return error_response(std::move(paths));

  std::optional<int64_t> client_if_match;
  if (Status s = parse_if_match(req.if_match, &client_if_match); !s) return error_response(std::move(s));

  // Optimistic: read, patch, write with If-Match on the version read. Without
  // a client If-Match a concurrent change is retried a few times.
  for (int attempt = 0; attempt < 5; ++attempt) {
    storage::ResourceVersion current;
    s = services.store->read(req.type, req.id, &current);
    if (!s) return error_response(std::move(s));
    if (current.deleted)
      return error_response(ErrorCategory::Gone, "deleted", req.type + "/" + req.id + " was deleted");
    if (client_if_match && *client_if_match != current.version)
      return error_response(ErrorCategory::PreconditionFailed, "conflict",
                            "version conflict: If-Match expected version " + std::to_string(*client_if_match) +
                                ", current is " + std::to_string(current.version));
    Doc doc;
    s = parse_tagged(current.json, &doc, "the stored resource");
    if (!s) return error_response(std::move(s));
    s = apply_json_patch(doc, patch);
    if (!s) return error_response(std::move(s));
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    write_tagged(doc, writer);

    fhir::Node patched;
    s = fhir::parse_json(*services.defs, std::string_view(buffer.GetString(), buffer.GetSize()), &patched);
    if (!s) {
      s.set_category(ErrorCategory::Unprocessable);
      return error_response(std::move(s));
    }
    if (fhir::resource_type(patched) != req.type || fhir::resource_id(patched) != req.id)
      return error_response(ErrorCategory::Unprocessable, "processing",
                            "a patch may not change the resource type or id");

    if (req.type == "DocumentReference") {
      // What the DMP lets a sharer change on a shared document (documents/mhd_lifecycle.cpp).
      s = mhd::check_document_status_change(current.json, patched.child_value("status"));
      if (!s) return error_response(std::move(s));
    }
    s = validate_for_write(services, patched);
    if (!s) return error_response(std::move(s));

    WriteOp op;
    op.kind = WriteOp::Kind::Update;
    op.type = req.type;
    op.id = req.id;
    op.method = "PATCH";
    op.if_match = current.version;
    s = PreparedBody::prepare(patched, req.id, &op.body);
    if (!s) return error_response(std::move(s));
    op.index = index_entries(*services.defs, patched);
    WriteOutcome outcome;
    s = services.store->write([&](storage::WriteTxn& txn) { return apply_write(txn, op, &outcome); });
    if (s) return write_response(req, op, outcome);
    if (s.category() != ErrorCategory::PreconditionFailed || client_if_match) return error_response(std::move(s));
  }
  return error_response(ErrorCategory::Conflict, "conflict", "the resource kept changing during the patch; retry");
}

}  // namespace espace::interactions
