# cmake -DINPUT=<file> -DOUTPUT=<file.cc> -DFUNCTION=<name> -DHEADER=<include> -P EmbedText.cmake
# Writes a C++ source whose function `std::string_view kchain::gateway::<FUNCTION>()` returns
# INPUT's bytes, so that the gateway serves a document that cannot drift from the tree's.
file(READ "${INPUT}" text)
set(delimiter "kchain_text")  # at most 16 characters
string(FIND "${text}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )${delimiter}\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/EmbedText.cmake. Do not edit.\n"
  "#include \"${HEADER}\"\n\n"
  "namespace kchain::gateway {\n\n"
  "std::string_view ${FUNCTION}() {\n"
  "  static constexpr char kText[] = R\"${delimiter}(${text})${delimiter}\";\n"
  "  return {kText, sizeof(kText) - 1};\n"
  "}\n\n"
  "}  // namespace kchain::gateway\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
