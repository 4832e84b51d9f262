// `espace import`: loads FHIR JSON files into a database without a server.
//
// Each file holds one resource: a batch/transaction Bundle runs as such, a
// resource with an id is written with update (so importing twice is
// harmless: it adds a version), one without an id is created.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "espace/fhir/definitions.h"
#include "espace/fhir/json.h"
#include "espace/fhir/read_file.h"
#include "espace/interactions/api.h"
#include "espace/profiles/validator.h"
#include "espace/storage/storage.h"
#include "espace/terminology/terminology.h"
#include "options.h"

namespace espace::app {

int cmd_import(int argc, char** argv) {
  Options o;
  std::string err;
  if (!o.parse(argc, argv, {"db", "fhir-package"}, {"no-fsync", "relaxed-profiles"}, &err) || o.positional().empty()) {
    std::fprintf(stderr,
                 "%s%susage: espace import --db FILE [--relaxed-profiles] PATH...  (files or directories of FHIR "
                 "JSON)\n",
                 err.c_str(), err.empty() ? "" : "\n");
    return 2;
  }
  std::unique_ptr<fhir::Definitions> defs;
  std::string package = o.get_or("fhir-package", fhir::Definitions::default_package_dir());
  if (fhir::Status s = fhir::Definitions::load(package, &defs); !s) {
    std::fprintf(stderr, "espace import: cannot load the FHIR definitions from %s: %s\n", package.c_str(),
                 s.message().c_str());
    return 1;
  }
  storage::SqliteOptions sopts;
  sopts.path = o.get_or("db", "var/espace.db");
  sopts.synchronous_full = !o.has_switch("no-fsync");
  std::unique_ptr<storage::Storage> store;
  if (fhir::Status s = storage::open_sqlite(sopts, &store); !s) {
    std::fprintf(stderr, "espace import: cannot open %s: %s\n", sopts.path.c_str(), s.message().c_str());
    return 1;
  }
  std::unique_ptr<terminology::Store> terms;
  if (fhir::Status s = terminology::Store::load(package, &terms); !s) {
    std::fprintf(stderr, "espace import: cannot load the terminology from %s: %s\n", package.c_str(),
                 s.message().c_str());
    return 1;
  }
  // Imported resources pass the same validation as REST writes.
  profiles::Validator validator(*defs, terms.get());
  // The French profiles are required as by `serve` (unless --relaxed-profiles).
  fhir::Status profiles_status = validator.load_data_profiles();
  if (profiles_status && !o.has_switch("relaxed-profiles")) profiles_status = validator.load_required_profiles();
  if (!profiles_status) {
    std::fprintf(stderr, "espace import: cannot load our profiles: %s\n", profiles_status.message().c_str());
    return 1;
  }
  interactions::Services services;
  services.defs = defs.get();
  services.store = store.get();
  services.validator = &validator;

  std::vector<std::filesystem::path> files;
  for (const std::string& arg : o.positional()) {
    std::filesystem::path p(arg);
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      for (auto& e : std::filesystem::recursive_directory_iterator(p, ec))
        if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());  // a stable order: referenced data first when named so

  int loaded = 0, failed = 0;
  for (const auto& file : files) {
    std::string text;
    if (!fhir::read_file(file.string(), &text)) {
      std::fprintf(stderr, "espace import: cannot read %s\n", file.c_str());
      ++failed;
      continue;
    }
    interactions::FhirRequest req;
    req.base_url = "urn:espace-import";
    req.prefer_return = interactions::PreferReturn::Minimal;
    fhir::Node node;
    fhir::Status s = fhir::parse_json(*defs, text, &node);
    if (!s) {
      std::fprintf(stderr, "espace import: %s: %s\n", file.c_str(), s.message().c_str());
      ++failed;
      continue;
    }
    req.type = std::string(fhir::resource_type(node));
    req.id = std::string(fhir::resource_id(node));
    std::string_view bundle_type = node.child_value("type");
    if (req.type == "Bundle" && (bundle_type == "transaction" || bundle_type == "batch"))
      req.interaction = interactions::Interaction::Transaction;
    else
      req.interaction = req.id.empty() ? interactions::Interaction::Create : interactions::Interaction::Update;
    req.resource = std::move(node);
    interactions::FhirResponse r = interactions::dispatch(services, req);
    if (!r.error.is_ok()) {
      std::fprintf(stderr, "espace import: %s: %s\n", file.c_str(), r.error.message().c_str());
      ++failed;
      continue;
    }
    ++loaded;
  }
  std::fprintf(stderr, "espace import: %d file(s) loaded, %d failed, into %s\n", loaded, failed, sopts.path.c_str());
  return failed ? 1 : 0;
}

}  // namespace espace::app
