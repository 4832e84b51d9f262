#include "options.h"

#include <algorithm>
#include <cstdlib>

namespace espace::app {

namespace {
std::string env_name(const std::string& flag) {
  std::string e = "ESPACE_";
  for (char c : flag) e.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return e;
}
}  // namespace

bool Options::parse(int argc, char** argv, const std::vector<std::string>& flags,
                    const std::vector<std::string>& switches, std::string* error) {
  auto is = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    if (is(switches, name)) {
      if (has_value) {
        *error = "--" + name + " takes no value";
        return false;
      }
      switches_on_.push_back(name);
    } else if (is(flags, name)) {
      if (!has_value) {
        if (i + 1 >= argc) {
          *error = "--" + name + " needs a value";
          return false;
        }
        value = argv[++i];
      }
      values_[name] = value;
    } else {
      *error = "unknown option --" + name;
      return false;
    }
  }
  for (const std::string& f : flags) {
    if (values_.count(f)) continue;
    if (const char* e = std::getenv(env_name(f).c_str()); e && *e) values_[f] = e;
  }
  for (const std::string& s : switches) {
    if (has_switch(s)) continue;
    if (const char* e = std::getenv(env_name(s).c_str()); e && (std::string(e) == "1" || std::string(e) == "true"))
      switches_on_.push_back(s);
  }
  return true;
}

std::optional<std::string> Options::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Options::get_or(const std::string& name, const std::string& fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

bool Options::get_int(const std::string& name, int64_t fallback, int64_t min, int64_t max, int64_t* out,
                      std::string* error) const {
  auto v = get(name);
  if (!v) {
    *out = fallback;
    return true;
  }
  char* end = nullptr;
  long long n = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end || n < min || n > max) {
    *error = "--" + name + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
    return false;
  }
  *out = n;
  return true;
}

bool Options::has_switch(const std::string& name) const {
  return std::find(switches_on_.begin(), switches_on_.end(), name) != switches_on_.end();
}

}  // namespace espace::app
