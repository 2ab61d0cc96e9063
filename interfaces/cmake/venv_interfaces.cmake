# Helpers for building ROS 2 interface packages against the ROS 2 wheels of a
# Python virtual environment (tools/build_interfaces.py). Each is a no-op where
# it has nothing to do, so the packages also build in an ordinary workspace.

# INTERFACES_WITH_CPP=OFF generates only what rclpy needs: C, its type supports
# (Fast DDS, introspection) and Python. ON adds the C++ code and type supports.
option(INTERFACES_WITH_CPP "Also generate the C++ code and type supports" ON)

# Call before rosidl_generate_interfaces(): with INTERFACES_WITH_CPP off, drops the
# C++ generators (registered by rosidl_default_generators) from this directory.
macro(select_interface_generators)
  if(NOT INTERFACES_WITH_CPP)
    list(FILTER AMENT_EXTENSIONS_rosidl_generate_idl_interfaces EXCLUDE REGEX "_cpp:")
    message(STATUS "Generating C and Python interfaces only (INTERFACES_WITH_CPP=OFF)")
  endif()
endmacro()

# The message wheels export their Python targets (<pkg>::<pkg>__rosidl_generator_py)
# with an include folder of the machine that built the wheels (its Python headers),
# missing here, and CMake refuses to generate. Call after rosidl_generate_interfaces():
# drops every missing absolute folder from the imported targets of this directory.
# Folders that exist (a ROS 2 installed from its own packages) are left alone.
function(drop_missing_include_dirs)
  get_directory_property(_targets DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    set(_dropped "")
    foreach(_dir IN LISTS _dirs)
      if(IS_ABSOLUTE "${_dir}" AND NOT _dir MATCHES "\\$<" AND NOT EXISTS "${_dir}")
        list(APPEND _dropped "${_dir}")
      else()
        list(APPEND _kept "${_dir}")
      endif()
    endforeach()
    if(_dropped)
      message(STATUS "${_target}: dropped missing include folder(s) ${_dropped}")
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
    endif()
  endforeach()
endfunction()
