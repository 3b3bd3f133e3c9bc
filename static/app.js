// dsms — progressive enhancement only: every form works without this file.
// 1. Forms with data-confirm ask before submitting (delete), then say so to the server.
// 2. Forms with data-validate check fields as the user types, with the server's French messages;
//    the server checks everything again (dates in the future, bounds) whatever this file says.
(function () {
  "use strict";

  var REQUIRED = "ce champ est obligatoire";
  var MESSAGES = {
    produitLong: "le produit ne peut dépasser 200 caractères",
    montantFormat: "le montant doit être un nombre décimal (ex. 1500 ou 750000.50)",
    montantPositive: "le montant doit être strictement positif",
    montantPrecise: "le montant ne peut avoir plus de 2 décimales",
    montantLarge: "le montant doit être inférieur à 10 000 000 000 FCFA",
    dateFormat: "la date doit être au format AAAA-MM-JJ (ex. 2026-11-24)"
  };

  // Same reading as the server: spaces between digit groups, a decimal comma or point.
  function normalizeMontant(text) {
    var t = text.replace(/[\s\u00a0\u202f]/g, "");
    if (t.indexOf(",") >= 0 && t.indexOf(".") < 0) {
      t = t.replace(",", ".");
    }
    return t;
  }

  function checkMontant(text) {
    var t = normalizeMontant(text).replace(/^\+/, "");
    var m = /^(\d+)(?:\.(\d+))?$/.exec(t);
    if (!m) {
      return MESSAGES.montantFormat;
    }
    var units = m[1].replace(/^0+/, "");
    var decimals = (m[2] || "").replace(/0+$/, "");
    if (units === "" && decimals === "") {
      return MESSAGES.montantPositive;
    }
    if (decimals.length > 2) {
      return MESSAGES.montantPrecise;
    }
    if (units.length > 10) {
      return MESSAGES.montantLarge;
    }
    return "";
  }

  function checkDate(text) {
    var t = text.trim();
    if (/^\d{4}-\d{2}-\d{2}$/.test(t) || /^\d{1,2}\/\d{1,2}\/\d{4}$/.test(t)) {
      return "";
    }
    return MESSAGES.dateFormat;
  }

  function message(field) {
    var value = field.value.trim();
    if (value === "") {
      return field.required ? REQUIRED : "";
    }
    switch (field.name) {
      case "produit":
        return Array.from(value).length > 200 ? MESSAGES.produitLong : "";
      case "montant":
        return checkMontant(value);
      case "dateVente":
        return checkDate(value);
      default:
        return "";
    }
  }

  function errorSlot(field) {
    return document.getElementById(field.id + "-erreur");
  }

  function show(field) {
    var text = message(field);
    var slot = errorSlot(field);
    if (slot) {
      slot.textContent = text;
    }
    if (text) {
      field.setAttribute("aria-invalid", "true");
    } else {
      field.removeAttribute("aria-invalid");
    }
    return text === "";
  }

  function checkedFields(form) {
    return Array.from(form.querySelectorAll("input[name], select[name]")).filter(function (field) {
      return field.type !== "hidden" && errorSlot(field);
    });
  }

  function enhanceValidation(form) {
    checkedFields(form).forEach(function (field) {
      field.addEventListener("blur", function () {
        if (field.value.trim() !== "" || field.dataset.touched) {
          field.dataset.touched = "1";
          show(field);
        }
      });
      field.addEventListener("input", function () {
        if (field.getAttribute("aria-invalid") === "true") {
          show(field);
        }
      });
      field.addEventListener("change", function () {
        if (field.tagName === "SELECT") {
          field.dataset.touched = "1";
          show(field);
        }
      });
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) {
      return;
    }
    if (form.hasAttribute("data-validate")) {
      var invalid = checkedFields(form).filter(function (field) {
        return !show(field);
      });
      if (invalid.length > 0) {
        event.preventDefault();
        invalid[0].focus();
        return;
      }
    }
    if (form.dataset.confirm) {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      var confirmed = form.querySelector('input[name="confirme"]');
      if (confirmed) {
        confirmed.value = "oui";
      }
    }
  });

  document.querySelectorAll("form[data-validate]").forEach(enhanceValidation);
})();
