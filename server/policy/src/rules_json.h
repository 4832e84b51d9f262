// Small RapidJSON accessors for the access rules: absent or mistyped members
// read as empty, so a malformed resource can never make a rule throw.
#pragma once

#include <rapidjson/document.h>

#include <string>
#include <vector>

namespace espace::policy::json {

inline const rapidjson::Value* member(const rapidjson::Value& v, const char* name) {
  if (!v.IsObject()) return nullptr;
  auto it = v.FindMember(name);
  return it == v.MemberEnd() ? nullptr : &it->value;
}
inline std::string str(const rapidjson::Value& v, const char* name) {
  const rapidjson::Value* m = member(v, name);
  return m && m->IsString() ? std::string(m->GetString(), m->GetStringLength()) : std::string();
}
inline bool boolean(const rapidjson::Value& v, const char* name) {
  const rapidjson::Value* m = member(v, name);
  return m && m->IsBool() && m->GetBool();
}
inline const rapidjson::Value* obj(const rapidjson::Value& v, const char* name) {
  const rapidjson::Value* m = member(v, name);
  return m && m->IsObject() ? m : nullptr;
}
inline const rapidjson::Value* arr(const rapidjson::Value& v, const char* name) {
  const rapidjson::Value* m = member(v, name);
  return m && m->IsArray() ? m : nullptr;
}
inline std::vector<std::string> strings(const rapidjson::Value& v, const char* name) {
  std::vector<std::string> out;
  if (const rapidjson::Value* a = arr(v, name))
    for (const auto& s : a->GetArray())
      if (s.IsString()) out.emplace_back(s.GetString(), s.GetStringLength());
  return out;
}

}  // namespace espace::policy::json
