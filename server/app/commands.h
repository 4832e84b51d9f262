// The subcommands of the `espace` binary; each takes argv with argv[0] = its name.
#pragma once

namespace espace::app {

int cmd_serve(int argc, char** argv);
int cmd_import(int argc, char** argv);
int cmd_validate(int argc, char** argv);
int cmd_token(int argc, char** argv);
int cmd_audit(int argc, char** argv);
int cmd_purge(int argc, char** argv);

}  // namespace espace::app

// Implemented in cmd_fhirpath.cpp.
int cmd_fhirpath(int argc, char** argv);
