// `espace fhirpath [--input FILE] [--strict] [--var NAME=VALUE]... EXPRESSION`
//
// Evaluates a FHIRPath expression over a FHIR resource (JSON or XML, chosen by
// the first non-blank character) and prints the result as a JSON array of
// {"type": T, "value": V}. Exit status 1 with the message on stderr when the
// input or the expression is invalid or the evaluation fails; 2 on bad usage.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "commands.h"
#include "espace/fhir/definitions.h"
#include "espace/fhir/json.h"
#include "espace/fhir/xml.h"
#include "espace/fhirpath/fhirpath.h"

namespace {

void usage() {
  std::fputs(
      "usage: espace fhirpath [--input FILE] [--strict] [--var NAME=VALUE]... EXPRESSION\n"
      "  --input FILE     FHIR resource in JSON or XML ('-' for standard input)\n"
      "  --strict         reject paths that cannot exist on the input's type\n"
      "  --var NAME=VALUE define %NAME as a string\n",
      stderr);
}

bool read_all(const std::string& path, std::string* out) {
  if (path == "-") {
    std::ostringstream s;
    s << std::cin.rdbuf();
    *out = s.str();
    return true;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return true;
}

void print_error(const espace::fhir::Status& st) {
  for (const auto& issue : st.issues()) {
    std::string where = issue.expression.empty() ? "" : " (at " + issue.expression + ")";
    std::fprintf(stderr, "espace fhirpath: %s%s\n", issue.diagnostics.c_str(), where.c_str());
  }
}

}  // namespace

int cmd_fhirpath(int argc, char** argv) {
  using namespace espace;
  std::string input_path, expression;
  bool strict = false, have_expression = false;
  fhirpath::Environment env;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--input" && i + 1 < argc) {
      input_path = argv[++i];
    } else if (a == "--strict") {
      strict = true;
    } else if (a == "--var" && i + 1 < argc) {
      std::string v = argv[++i];
      size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0) {
        usage();
        return 2;
      }
      env.variables[v.substr(0, eq)] = {fhirpath::Value::of_string(v.substr(eq + 1))};
    } else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else if (!have_expression && (a.empty() || a[0] != '-' || a.size() == 1 || a == "--")) {
      if (a == "--") {
        if (i + 1 >= argc) break;
        a = argv[++i];
      }
      expression = a;
      have_expression = true;
    } else if (!have_expression && a[0] == '-') {
      // An expression may start with '-' ("-1 + 2"): accept it when it is not an option.
      expression = a;
      have_expression = true;
    } else {
      usage();
      return 2;
    }
  }
  if (!have_expression) {
    usage();
    return 2;
  }

  std::unique_ptr<fhir::Definitions> defs;
  fhir::Status st = fhir::Definitions::load(fhir::Definitions::default_package_dir(), &defs);
  if (!st) {
    std::fprintf(stderr, "espace fhirpath: cannot load the FHIR R4 definitions from %s: %s\n",
                 fhir::Definitions::default_package_dir().c_str(), st.message().c_str());
    return 1;
  }

  fhir::Node resource;
  bool have_resource = false;
  if (!input_path.empty()) {
    std::string text;
    if (!read_all(input_path, &text)) {
      std::fprintf(stderr, "espace fhirpath: cannot read %s\n", input_path.c_str());
      return 1;
    }
    size_t first = text.find_first_not_of(" \t\r\n\xEF\xBB\xBF");
    bool xml = first != std::string::npos && text[first] == '<';
    st = xml ? fhir::parse_xml(*defs, text, &resource) : fhir::parse_json(*defs, text, &resource);
    if (!st) {
      std::fprintf(stderr, "espace fhirpath: %s is not a valid FHIR %s resource:\n", input_path.c_str(),
                   xml ? "XML" : "JSON");
      print_error(st);
      return 1;
    }
    have_resource = true;
  }

  fhirpath::CompileOptions opts;
  opts.definitions = defs.get();
  opts.strict = strict;
  if (have_resource && resource.type) opts.root_type = resource.type->name;
  std::shared_ptr<const fhirpath::Expression> expr;
  st = fhirpath::compile(expression, opts, &expr);
  if (!st) {
    print_error(st);
    return 1;
  }
  env.trace = [](std::string_view name, const fhirpath::Collection& values) {
    std::string line = "trace " + std::string(name) + ":";
    for (const auto& v : values) line += " " + fhirpath::display(v);
    std::fprintf(stderr, "%s\n", line.c_str());
  };
  fhirpath::Collection out;
  st = expr->evaluate(have_resource ? &resource : nullptr, env, &out);
  if (!st) {
    print_error(st);
    return 1;
  }
  std::string json = "[";
  for (size_t i = 0; i < out.size(); ++i) {
    if (i) json += ",";
    json += "{\"type\":\"" + fhirpath::output_type(out[i]) + "\",\"value\":" + fhirpath::output_json(out[i]) + "}";
  }
  json += "]\n";
  std::fputs(json.c_str(), stdout);
  return 0;
}
