// Shared helpers of the XML tests: the loaded Definitions, a canonical JSON
// comparison and an XHTML normaliser.
#pragma once

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "espace/fhir/definitions.h"
#include "model_fixture.h"

namespace xml_test {

// Loaded once per test program (shared with the other fhir-model tests).
inline const espace::fhir::Definitions& definitions() { return test_definitions(); }

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// XHTML compared by structure: element names and namespaces, attributes as a
// sorted set, text with character data decoded. That removes differences of
// spelling only (attribute order and quotes, escaping, <br/> vs <br></br>,
// where the namespace is declared). With `drop_blank_text`, whitespace-only
// text nodes are also ignored (converters disagree on indentation).
inline void normalise_xhtml_node(const xmlNode* n, bool drop_blank_text, std::string& out) {
  for (; n; n = n->next) {
    if (n->type == XML_ELEMENT_NODE) {
      out += '<';
      if (n->ns) out += "{" + std::string(reinterpret_cast<const char*>(n->ns->href)) + "}";
      out += reinterpret_cast<const char*>(n->name);
      std::vector<std::string> attrs;
      for (const xmlAttr* a = n->properties; a; a = a->next) {
        std::string attr = reinterpret_cast<const char*>(a->name);
        attr += "=";
        for (const xmlNode* t = a->children; t; t = t->next)
          if (t->content) attr += reinterpret_cast<const char*>(t->content);
        attrs.push_back(std::move(attr));
      }
      std::sort(attrs.begin(), attrs.end());
      for (const std::string& a : attrs) out += " [" + a + "]";
      out += '>';
      normalise_xhtml_node(n->children, drop_blank_text, out);
      out += "</>";
    } else if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
      std::string text = n->content ? reinterpret_cast<const char*>(n->content) : "";
      if (drop_blank_text && text.find_first_not_of(" \t\r\n") == std::string::npos) continue;
      out += text;
    }
  }
}

// Returns "" when `text` is not well-formed.
inline std::string normalise_xhtml(const std::string& text, bool drop_blank_text) {
  xmlDoc* doc = xmlReadMemory(text.data(), static_cast<int>(text.size()), nullptr, nullptr,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (!doc) return "";
  std::string out;
  normalise_xhtml_node(xmlDocGetRootElement(doc), drop_blank_text, out);
  xmlFreeDoc(doc);
  return out;
}

// A JSON value keeping numbers as their text, so 1.50 and 1.5 differ.
struct JsonValue {
  enum Kind { Null, Bool, Number, String, Object, Array } kind = Null;
  std::string text;
  std::vector<std::pair<std::string, JsonValue>> members;
  std::vector<JsonValue> items;
};

class JsonBuilder : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, JsonBuilder> {
 public:
  JsonValue root;
  bool Null() { return add(JsonValue{}); }
  bool Bool(bool b) { return add(JsonValue{JsonValue::Bool, b ? "true" : "false", {}, {}}); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    return add(JsonValue{JsonValue::Number, std::string(s, n), {}, {}});
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    return add(JsonValue{JsonValue::String, std::string(s, n), {}, {}});
  }
  bool StartObject() { return open(JsonValue::Object); }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    pending_key_.assign(s, n);
    return true;
  }
  bool EndObject(rapidjson::SizeType) { return close(); }
  bool StartArray() { return open(JsonValue::Array); }
  bool EndArray(rapidjson::SizeType) { return close(); }

 private:
  std::vector<JsonValue> stack_;
  std::vector<std::string> keys_;
  std::string pending_key_;

  bool add(JsonValue v) {
    if (stack_.empty()) {
      root = std::move(v);
    } else if (stack_.back().kind == JsonValue::Object) {
      stack_.back().members.emplace_back(pending_key_, std::move(v));
    } else {
      stack_.back().items.push_back(std::move(v));
    }
    return true;
  }
  bool open(JsonValue::Kind k) {
    keys_.push_back(pending_key_);
    JsonValue v;
    v.kind = k;
    stack_.push_back(std::move(v));
    return true;
  }
  bool close() {
    JsonValue v = std::move(stack_.back());
    stack_.pop_back();
    pending_key_ = keys_.back();
    keys_.pop_back();
    return add(std::move(v));
  }
};

inline bool parse_json_value(const std::string& text, JsonValue* out, std::string* error) {
  JsonBuilder builder;
  rapidjson::Reader reader;
  rapidjson::StringStream ss(text.c_str());
  auto result = reader.Parse<rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseValidateEncodingFlag>(ss, builder);
  if (!result) {
    *error = std::string(rapidjson::GetParseError_En(result.Code())) + " at offset " +
             std::to_string(result.Offset());
    return false;
  }
  *out = std::move(builder.root);
  return true;
}

// Options of the canonical comparison.
struct CompareOptions {
  // Ignore whitespace-only text nodes in XHTML.
  bool drop_blank_xhtml_text = false;
  // Compare strings as the XML spec (1.0 section 3.3.3) normalises a literal
  // tab, CR or LF inside an attribute value: as a space.
  bool attribute_whitespace = false;
};

inline std::string attribute_normalised(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return s;
}

// Compares two JSON values: object key order ignored, array order kept,
// numbers by exact text; "div" strings compared as normalised XHTML.
// Returns "" when equal, else the location and nature of the first difference.
inline std::string json_difference(const JsonValue& a, const JsonValue& b, const std::string& path,
                                   const CompareOptions& opts) {
  if (a.kind != b.kind) return path + ": different kinds";
  switch (a.kind) {
    case JsonValue::Null:
      return "";
    case JsonValue::Bool:
    case JsonValue::Number:
      return a.text == b.text ? "" : path + ": " + a.text + " vs " + b.text;
    case JsonValue::String:
      if (a.text == b.text) return "";
      if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".div") == 0) {
        std::string na = normalise_xhtml(a.text, opts.drop_blank_xhtml_text);
        std::string nb = normalise_xhtml(b.text, opts.drop_blank_xhtml_text);
        if (!na.empty() && na == nb) return "";
        return path + ": XHTML differs:\n  " + a.text + "\n  " + b.text;
      }
      if (opts.attribute_whitespace && attribute_normalised(a.text) == attribute_normalised(b.text)) return "";
      return path + ": \"" + a.text + "\" vs \"" + b.text + "\"";
    case JsonValue::Array:
      if (a.items.size() != b.items.size())
        return path + ": " + std::to_string(a.items.size()) + " vs " + std::to_string(b.items.size()) + " items";
      for (size_t i = 0; i < a.items.size(); ++i) {
        std::string d = json_difference(a.items[i], b.items[i], path + "[" + std::to_string(i) + "]",
                                        opts);
        if (!d.empty()) return d;
      }
      return "";
    case JsonValue::Object: {
      auto sorted = [](const JsonValue& v) {
        std::vector<const std::pair<std::string, JsonValue>*> m;
        for (const auto& p : v.members) m.push_back(&p);
        std::sort(m.begin(), m.end(), [](auto* x, auto* y) { return x->first < y->first; });
        return m;
      };
      auto ma = sorted(a), mb = sorted(b);
      size_t i = 0, j = 0;
      while (i < ma.size() || j < mb.size()) {
        if (j == mb.size() || (i < ma.size() && ma[i]->first < mb[j]->first))
          return path + "." + ma[i]->first + ": only in the first";
        if (i == ma.size() || mb[j]->first < ma[i]->first) return path + "." + mb[j]->first + ": only in the second";
        std::string d = json_difference(ma[i]->second, mb[j]->second, path + "." + ma[i]->first,
                                        opts);
        if (!d.empty()) return d;
        ++i;
        ++j;
      }
      return "";
    }
  }
  return "";
}

// "" when the two JSON texts are canonically equal.
inline std::string compare_json_texts(const std::string& expected, const std::string& actual,
                                      const CompareOptions& opts = {}) {
  JsonValue a, b;
  std::string error;
  if (!parse_json_value(expected, &a, &error)) return "expected JSON does not parse: " + error;
  if (!parse_json_value(actual, &b, &error)) return "actual JSON does not parse: " + error;
  return json_difference(a, b, "", opts);
}

}  // namespace xml_test
