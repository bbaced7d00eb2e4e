# Installs the Python client's packages and generates its stubs from proto/.
python_client_setup() {
  local dir="$1/clients/python"
  python3 -m pip install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
  "$dir/generate.sh" >/dev/null
}
