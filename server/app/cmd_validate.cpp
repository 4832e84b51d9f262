// `espace validate [--profile URL] FILE...`: validates FHIR JSON or XML files
// against the R4 base specification, printing one line per issue.
// Exit status: 0 when no file has an error, 1 otherwise, 2 on usage errors.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "commands.h"
#include "espace/fhir/definitions.h"
#include "espace/fhir/json.h"
#include "espace/fhir/xml.h"
#include "espace/profiles/validator.h"
#include "espace/terminology/terminology.h"
#include "options.h"

namespace espace::app {

namespace {

constexpr size_t kMaxFileBytes = 256u << 20;

bool read_file(const std::string& path, std::string* out, std::string* error) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *error = "cannot read the file";
    return false;
  }
  f.seekg(0, std::ios::end);
  std::streamoff size = f.tellg();
  if (size < 0 || static_cast<size_t>(size) > kMaxFileBytes) {
    *error = "file larger than 256 MB";
    return false;
  }
  f.seekg(0);
  out->resize(static_cast<size_t>(size));
  f.read(out->data(), size);
  return true;
}

bool looks_like_xml(const std::string& path, const std::string& text) {
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".xml") == 0) return true;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '<';
  }
  return false;
}

void print_issue(const std::string& file, const fhir::Issue& i) {
  std::printf("%s: %s %s%s%s: %s\n", file.c_str(), fhir::severity_code(i.severity),
              i.message_id.empty() ? i.code.c_str() : i.message_id.c_str(), i.expression.empty() ? "" : " @ ",
              i.expression.c_str(), i.diagnostics.c_str());
}

}  // namespace

int cmd_validate(int argc, char** argv) {
  Options o;
  std::string err;
  if (!o.parse(argc, argv, {"profile", "fhir-package", "snapshot"}, {"quiet"}, &err) ||
      (o.positional().empty() && !o.get("snapshot"))) {
    std::fprintf(stderr,
                 "%s%susage: espace validate [--profile URL] [--fhir-package DIR] [--quiet] FILE...\n"
                 "  validates FHIR JSON or XML resources against the R4 base specification, their meta.profile\n"
                 "  and --profile (our profiles of profiles/data are checked);\n"
                 "  prints one line per issue (--quiet: errors only); exit status 1 if any error\n"
                 "       espace validate --snapshot URL\n"
                 "  prints one of our profiles with the snapshot generated from its differential\n",
                 err.c_str(), err.empty() ? "" : "\n");
    return 2;
  }
  std::string package = o.get_or("fhir-package", fhir::Definitions::default_package_dir());
  std::unique_ptr<fhir::Definitions> defs;
  if (fhir::Status s = fhir::Definitions::load(package, &defs); !s) {
    std::fprintf(stderr, "espace validate: cannot load the FHIR definitions from %s: %s\n", package.c_str(),
                 s.message().c_str());
    return 1;
  }
  std::unique_ptr<terminology::Store> terms;
  if (fhir::Status s = terminology::Store::load(package, &terms); !s) {
    std::fprintf(stderr, "espace validate: cannot load the terminology from %s: %s\n", package.c_str(),
                 s.message().c_str());
    return 1;
  }
  profiles::Validator validator(*defs, terms.get());
  // Our profiles (profiles/data) for --profile and meta.profile; none is required here.
  if (fhir::Status s = validator.load_data_profiles(); !s) {
    std::fprintf(stderr, "espace validate: cannot load our profiles: %s\n", s.message().c_str());
    return 1;
  }
  if (auto url = o.get("snapshot")) {
    std::string json = validator.snapshot_json(*url);
    if (json.empty()) {
      std::fprintf(stderr, "espace validate: %s is not one of our profiles\n", url->c_str());
      return 1;
    }
    std::fputs(json.c_str(), stdout);
    return 0;
  }
  profiles::ValidationOptions opts;
  if (auto p = o.get("profile")) opts.profiles.push_back(*p);
  const bool quiet = o.has_switch("quiet");

  bool any_error = false;
  for (const std::string& file : o.positional()) {
    std::string text, why;
    if (!read_file(file, &text, &why)) {
      std::printf("%s: fatal %s\n", file.c_str(), why.c_str());
      any_error = true;
      continue;
    }
    fhir::Node node;
    fhir::ParseLimits limits;
    limits.max_bytes = kMaxFileBytes;
    fhir::Status s = looks_like_xml(file, text) ? fhir::parse_xml(*defs, text, &node, limits)
                                                : fhir::parse_json(*defs, text, &node, limits);
    if (!s) {
      for (const fhir::Issue& i : s.issues()) print_issue(file, i);
      any_error = true;
      continue;
    }
    std::vector<fhir::Issue> issues = validator.validate(node, opts);
    bool errors = profiles::has_errors(issues);
    any_error = any_error || errors;
    size_t shown = 0;
    for (const fhir::Issue& i : issues) {
      if (quiet && i.severity != fhir::Severity::Error && i.severity != fhir::Severity::Fatal) continue;
      print_issue(file, i);
      ++shown;
    }
    if (!errors && !quiet) std::printf("%s: ok%s\n", file.c_str(), shown ? " (no errors)" : "");
  }
  return any_error ? 1 : 0;
}

}  // namespace espace::app
