// The sign-in page: says why the last attempt failed.
if (new URLSearchParams(location.search).has("error")) {
  document.getElementById("login-error").hidden = false;
}
