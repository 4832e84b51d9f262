// Reads a whole file into memory (definitions, terminology, command-line input).
#pragma once

#include <string>

namespace espace::fhir {

// False when the file cannot be opened or read completely.
bool read_file(const std::string& path, std::string* out);

}  // namespace espace::fhir
