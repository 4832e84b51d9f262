// espace — a FHIR R4 server for the French shared health record.
#include <cstdio>
#include <cstring>
#include <string>

#include "commands.h"

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: espace <command> [options]\n"
      "\n"
      "commands:\n"
      "  serve      run the FHIR server (espace serve --help)\n"
      "  import     load FHIR JSON files or directories into a database\n"
      "  validate   validate FHIR JSON/XML files: espace validate [--profile URL] FILE...\n"
      "  fhirpath   evaluate a FHIRPath expression: espace fhirpath [--input FILE] EXPRESSION\n"
      "  token      development signing keys and bearer tokens (espace token --help)\n"
      "  audit      check the audit trail's hash chain: espace audit verify --db FILE\n"
      "  purge      remove connected-app measurements past their retention: espace purge --db FILE\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  std::string command = argv[1];
  if (command == "serve") return espace::app::cmd_serve(argc - 1, argv + 1);
  if (command == "import") return espace::app::cmd_import(argc - 1, argv + 1);
  if (command == "validate") return espace::app::cmd_validate(argc - 1, argv + 1);
  if (command == "fhirpath") return cmd_fhirpath(argc - 1, argv + 1);
  if (command == "token") return espace::app::cmd_token(argc - 1, argv + 1);
  if (command == "audit") return espace::app::cmd_audit(argc - 1, argv + 1);
  if (command == "purge") return espace::app::cmd_purge(argc - 1, argv + 1);
  if (command == "--help" || command == "-h" || command == "help") {
    usage(stdout);
    return 0;
  }
  std::fprintf(stderr, "espace: unknown command '%s'\n", command.c_str());
  usage(stderr);
  return 2;
}
