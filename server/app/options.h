// Command-line flags with environment fallbacks: `--name value` or
// `--name=value`, else ESPACE_NAME (upper case, dashes as underscores).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace espace::app {

class Options {
 public:
  // `flags` are the names taking a value, `switches` those that do not.
  // Unknown flags are an error: a typo must not silently change nothing.
  bool parse(int argc, char** argv, const std::vector<std::string>& flags, const std::vector<std::string>& switches,
             std::string* error);
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  // False (with error set) when present but not an integer in [min, max].
  bool get_int(const std::string& name, int64_t fallback, int64_t min, int64_t max, int64_t* out,
               std::string* error) const;
  bool has_switch(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> switches_on_;
  std::vector<std::string> positional_;
};

}  // namespace espace::app
