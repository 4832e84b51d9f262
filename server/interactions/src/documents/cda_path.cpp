// The XPath subset of cda_path.h.
#include "cda_path.h"

namespace espace::interactions::cda {
namespace {

using fhir::ErrorCategory;
using fhir::Status;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.' || c == ':';
}

Status bad_path(std::string_view text, std::string why) {
  return Status::error(ErrorCategory::Internal, "exception",
                       "CDA rule path '" + std::string(text) + "' is not supported: " + why);
}

bool step_accepts(const PathStep& step, const XmlElement& e) {
  if (!e.in_hl7) return false;
  if (step.name != "*" && e.name != step.name) return false;
  if (!step.predicate_attribute.empty()) {
    const std::string* v = e.attribute(step.predicate_attribute);
    if (!v || *v != step.predicate_value) return false;
  }
  return true;
}

// Position of `e` among its hl7 siblings of the same name (1-based), and
// whether it has such siblings at all.
std::pair<int, bool> sibling_position(const XmlElement& e) {
  if (!e.parent) return {1, false};
  int position = 0, count = 0;
  for (const auto& c : e.parent->children) {
    if (!c->in_hl7 || c->name != e.name) continue;
    ++count;
    if (c.get() == &e) position = count;
  }
  return {position, count > 1};
}

std::string step_xpath(const XmlElement& e, bool force_position) {
  auto [position, has_siblings] = sibling_position(e);
  std::string s = "/" + e.name;
  if (has_siblings || force_position) s += "[" + std::to_string(position) + "]";
  return s;
}

std::string step_text(const PathStep& s) {
  if (s.kind == PathStep::Kind::Attribute) return "@" + s.name;
  if (s.kind == PathStep::Kind::Name) return "name()";
  std::string t = s.name;
  if (s.position > 0) t += "[" + std::to_string(s.position) + "]";
  if (!s.predicate_attribute.empty()) t += "[@" + s.predicate_attribute + "='" + s.predicate_value + "']";
  return t;
}

}  // namespace

std::string collapse_whitespace(std::string_view text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

Status parse_path(std::string_view text, Path* out) {
  *out = Path();
  out->text = std::string(text);
  size_t i = 0;
  if (!text.empty() && text[0] == '/') {
    out->absolute = true;
    i = 1;
  }
  if (i >= text.size()) return bad_path(text, "empty");
  while (i < text.size()) {
    PathStep step;
    if (!out->steps.empty() && out->steps.back().kind != PathStep::Kind::Element)
      return bad_path(text, "an attribute or name() must be the last step");
    if (text[i] == '@') {
      step.kind = PathStep::Kind::Attribute;
      ++i;
    }
    size_t start = i;
    if (i < text.size() && text[i] == '*' && step.kind == PathStep::Kind::Element) {
      ++i;
    } else {
      while (i < text.size() && is_name_char(text[i])) ++i;
    }
    step.name = std::string(text.substr(start, i - start));
    if (step.name.empty()) return bad_path(text, "empty step");
    if (step.name == "name" && text.substr(i, 2) == "()") {
      step.kind = PathStep::Kind::Name;
      i += 2;
    }
    while (i < text.size() && text[i] == '[') {
      size_t close = text.find(']', i);
      if (close == std::string_view::npos) return bad_path(text, "unclosed predicate");
      std::string_view predicate = text.substr(i + 1, close - i - 1);
      if (!predicate.empty() && predicate[0] == '@') {
        size_t eq = predicate.find('=');
        if (eq == std::string_view::npos || predicate.size() < eq + 3 || predicate[eq + 1] != '\'' ||
            predicate.back() != '\'')
          return bad_path(text, "predicates are [n] or [@attribute='value']");
        step.predicate_attribute = std::string(predicate.substr(1, eq - 1));
        step.predicate_value = std::string(predicate.substr(eq + 2, predicate.size() - eq - 3));
      } else {
        int n = 0;
        for (char c : predicate) {
          if (c < '0' || c > '9' || n > 100000) return bad_path(text, "predicates are [n] or [@attribute='value']");
          n = n * 10 + (c - '0');
        }
        if (n <= 0) return bad_path(text, "positions start at 1");
        step.position = n;
      }
      i = close + 1;
    }
    if (step.kind != PathStep::Kind::Element && (step.position || !step.predicate_attribute.empty()))
      return bad_path(text, "predicates apply to elements");
    out->steps.push_back(std::move(step));
    if (i < text.size()) {
      if (text[i] != '/') return bad_path(text, "unexpected character");
      ++i;
      if (i >= text.size()) return bad_path(text, "trailing '/'");
    }
  }
  return Status::ok();
}

std::string element_xpath(const XmlElement& element) {
  std::vector<const XmlElement*> chain;
  for (const XmlElement* e = &element; e; e = e->parent) chain.push_back(e);
  std::string out;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) out += step_xpath(**it, false);
  return out;
}

PathResult evaluate_path(const Path& path, const XmlElement& context, const std::string& context_xpath) {
  PathResult result;
  struct Cursor {
    const XmlElement* element;
    std::string xpath;
  };
  std::vector<Cursor> current;
  size_t first_step = 0;
  if (path.absolute) {
    // The first step names the root element itself.
    const XmlElement* root = &context;
    while (root->parent) root = root->parent;
    const PathStep& s = path.steps[0];
    if (s.kind != PathStep::Kind::Element || !step_accepts(s, *root) || s.position > 1) {
      result.missing_xpath = "/" + step_text(s);
      return result;
    }
    current.push_back({root, "/" + root->name});
    first_step = 1;
  } else {
    current.push_back({&context, context_xpath});
  }

  for (size_t k = first_step; k < path.steps.size(); ++k) {
    const PathStep& s = path.steps[k];
    if (s.kind != PathStep::Kind::Element) {
      for (const Cursor& c : current) {
        if (s.kind == PathStep::Kind::Name) {
          result.matches.push_back({c.element, c.element->name, c.xpath + "/name()"});
        } else if (const std::string* v = c.element->attribute(s.name)) {
          result.matches.push_back({c.element, *v, c.xpath + "/@" + s.name});
        }
      }
      if (result.matches.empty() && !current.empty()) result.missing_xpath = current.front().xpath + "/@" + s.name;
      return result;
    }
    std::vector<Cursor> next;
    const bool selective = s.position > 0 || !s.predicate_attribute.empty();
    for (const Cursor& c : current) {
      int seen = 0;
      for (const auto& child : c.element->children) {
        if (!step_accepts(s, *child)) continue;
        ++seen;
        if (s.position > 0 && seen != s.position) continue;
        next.push_back({child.get(), c.xpath + step_xpath(*child, selective)});
      }
    }
    if (next.empty()) {
      std::string where = current.front().xpath;
      for (size_t r = k; r < path.steps.size(); ++r) where += "/" + step_text(path.steps[r]);
      result.missing_xpath = where;
      return result;
    }
    current = std::move(next);
  }
  for (Cursor& c : current)
    result.matches.push_back({c.element, collapse_whitespace(c.element->text), std::move(c.xpath)});
  return result;
}

}  // namespace espace::interactions::cda
